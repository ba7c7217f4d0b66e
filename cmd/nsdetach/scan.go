package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
	"github.com/spf13/cobra"
)

func newScanCommand(stdout io.Writer) *cobra.Command {
	var cfg scanConfig
	cmd := &cobra.Command{
		Use:   "scan --root DIR",
		Short: "List the mounts under DIR that leaked into other mount namespaces",
		Long: `scan reads the mount table of every mount namespace on the machine once and
lists each mount under DIR (the engine's data root) that a namespace other than
nsdetach's own has mounted, grouped by namespace: the namespace id, its
processes with their commands and start times, the mount point as the holder
sees it, the overlay2 layer id (from <DIR>/overlay2/<id>/merged or the
overlay's upperdir=), and a verdict:

  stale    no live container uses the mount: it only keeps a removed
           container's layer busy. 'nsdetach detach --root DIR --stale-only'
           removes it.
  pinned   a live container uses it: the same layer (upperdir) is the root
           directory of a running container somewhere, or the same filesystem
           is mounted in a container's namespace. Detaching this copy frees
           nothing until the container stops (harmless, though).

Mounts that belong to a running workload are not leaks and are only counted
(listed with --all, always in --json, marked "in_use"): a container's root
directory and the mounts inside it, the engine's own namespace (dockerd runs
in it), and replicas of mounts that nsdetach's own namespace still has at the
same place.

Nothing is changed. Exit status: 0 when nothing leaked, 1 when leaks were
found, 2 on bad input (a --root that does not exist) or when a namespace or
process could not be read (run as root): no answer is given then.`,
		Example: `  nsdetach scan --root /var/lib/docker
  nsdetach scan --root /home/docker_rt --all
  nsdetach scan --root /var/lib/docker --json | jq '.namespaces[].mounts[] | select(.verdict=="stale")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd.Context(), stdout, cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.root, "root", "", "the engine's data root (required)")
	cmd.Flags().BoolVar(&cfg.all, "all", false, "also list the mounts in use by live containers and the engine")
	cmd.Flags().BoolVar(&cfg.asJSON, "json", false, "print the scan as one JSON document (every mount, with in_use)")
	return cmd
}

// scanConfig is what scan runs with: its flags.
type scanConfig struct {
	root   string
	all    bool
	asJSON bool
}

// runScan is scan: one pass over every namespace, nothing changed.
func runScan(ctx context.Context, stdout io.Writer, cfg scanConfig) error {
	if cfg.root == "" {
		return usageError(errors.New("--root DIR is required: the engine's data root (dockerd --data-root; default /var/lib/docker)"))
	}
	scan, err := daemon.FindLeaks(ctx, cfg.root, 0)
	if err != nil {
		return classify(err)
	}
	if scan.Namespaces == nil {
		scan.Namespaces = []daemon.LeakNamespace{} // JSON: [], not null
	}
	if err := emit(stdout, cfg.asJSON, scan, func() { printScan(stdout, scan, cfg.all) }); err != nil {
		return err
	}
	return found(scan.Leaked() > 0)
}

// scanDurationPrecision is how precisely the summary gives a scan's
// duration: to 0.1 ms, which is below what a scan of a few namespaces takes
// and drops the digits that vary from run to run.
const scanDurationPrecision = 100 * time.Microsecond

// printScan writes a block per namespace and a summary line.
func printScan(w io.Writer, s daemon.LeakScan, all bool) {
	inUse := 0
	for _, ns := range s.Namespaces {
		var lines []string
		for _, l := range ns.Leaks {
			if l.InUse {
				inUse++
				if !all {
					continue
				}
			}
			lines = append(lines, "  "+describeLeak(l))
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintln(w, describeNamespace(ns))
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
	n := s.Count()
	fmt.Fprintf(w, "summary: %d leaked mounts under %s (%d stale, %d pinned); %d in use by live containers or the engine",
		n[daemon.Stale]+n[daemon.Pinned], s.Root, n[daemon.Stale], n[daemon.Pinned], inUse)
	if inUse > 0 && !all {
		fmt.Fprint(w, " (--all lists them)")
	}
	fmt.Fprintf(w, "; %d namespaces scanned in %s\n", s.Scanned, s.Duration.Round(scanDurationPrecision))
}

func describeNamespace(ns daemon.LeakNamespace) string {
	kind := ""
	switch {
	case ns.Container:
		kind = " [container]"
	case ns.Engine:
		kind = " [engine]"
	}
	if len(ns.Processes) == 0 {
		return fmt.Sprintf("mnt:[%d]%s: no process seen (pinned by an nsfs mount or fd, or its processes may not be inspected)", ns.Inode, kind)
	}
	ps := make([]string, len(ns.Processes))
	for i, p := range ns.Processes {
		started := "start unknown"
		if !p.Started.IsZero() {
			started = "started " + p.Started.Format("2006-01-02T15:04:05Z")
		}
		ps[i] = fmt.Sprintf("%d %s (%s)", p.PID, p.Command, started)
	}
	return fmt.Sprintf("mnt:[%d]%s: %s", ns.Inode, kind, shortList(ps, ", "))
}

func describeLeak(l daemon.Leak) string {
	state := string(l.Verdict)
	if l.InUse {
		state = "in-use"
	}
	var extra []string
	if l.HostPath != "" && l.HostPath != l.Mountpoint {
		extra = append(extra, "here "+l.HostPath)
	}
	if l.LayerID != "" {
		extra = append(extra, "layer "+l.LayerID)
	}
	if l.ContainerID != "" {
		// The mount point already ends in the container's id.
		extra = append(extra, "container rootfs, "+l.Snapshotter+" snapshotter")
	}
	extra = append(extra, fmt.Sprintf("%s, mount %d", l.FSType, l.ID))
	return fmt.Sprintf("%-7s %s (%s): %s", state, l.Mountpoint, strings.Join(extra, ", "), l.Why)
}

// leakPass is the outcome of one detach pass over the leaks of a scan.
type leakPass struct {
	// Found is how many leaked mounts the scan found (in-use ones excluded);
	// Selected how many of them the pass went for (all, or the stale ones).
	Found    int `json:"found"`
	Selected int `json:"selected"`
	// Detached were unmounted (or would be, in a dry run); Gone went with
	// their namespace before it was entered; Failed were refused or failed.
	Detached int `json:"detached"`
	Gone     int `json:"gone"`
	Failed   int `json:"failed"`
	// Remaining is how many leaked mounts are still there afterwards,
	// those left alone included.
	Remaining int              `json:"remaining"`
	Reports   []mountns.Report `json:"reports"`
}

// detachLeaks detaches the leaks of scan (only the stale ones with
// staleOnly) inside their namespaces, one setns per namespace, a few
// namespaces at a time; progress is called after each namespace.
func detachLeaks(ctx context.Context, scan daemon.LeakScan, staleOnly, dryRun bool, progress func(done, total int, rep mountns.Report)) (leakPass, error) {
	keep := func(l daemon.Leak) bool { return !staleOnly || l.Verdict == daemon.Stale }
	holders := scan.Holders(keep)
	p := leakPass{Found: scan.Leaked(), Reports: make([]mountns.Report, len(holders))}
	for _, h := range holders {
		p.Selected += len(h.Mounts)
	}
	var (
		mu    sync.Mutex
		done  int
		fatal error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 4)
	)
	for i, h := range holders {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, h mountns.Holder) {
			defer func() { <-sem; wg.Done() }()
			rep, err := mountns.DetachHolders(ctx, scan.Root, []mountns.Holder{h},
				mountns.WithRoot(scan.Root), mountns.WithDryRun(dryRun))
			var de *mountns.DetachError
			mu.Lock()
			defer mu.Unlock()
			if err != nil && !errors.As(err, &de) && fatal == nil {
				fatal = err
			}
			p.Reports[i] = rep
			done++
			if progress != nil {
				progress(done, len(holders), rep)
			}
		}(i, h)
	}
	wg.Wait()
	if fatal != nil {
		return p, fatal
	}
	// What was not selected remains, and so does every selected mount that
	// the namespace's table still lists afterwards.
	p.Remaining = p.Found - p.Selected
	for _, rep := range p.Reports {
		by, remaining := rep.Count()
		p.Detached += by[mountns.Detached] + by[mountns.WouldDetach]
		p.Gone += by[mountns.Gone]
		p.Failed += by[mountns.Failed] + by[mountns.Refused]
		p.Remaining += remaining
	}
	return p, nil
}

// namespaceProgress is the progress line of one namespace.
func namespaceProgress(done, total int, rep mountns.Report) string {
	var ns mountns.NamespaceReport
	if len(rep.Namespaces) > 0 {
		ns = rep.Namespaces[0]
	}
	by, remaining := rep.Count()
	s := fmt.Sprintf("[%d/%d] %s: %d detached, %d gone, %d failed, %d remaining",
		done, total, who(ns.Namespace, ns.Commands), by[mountns.Detached]+by[mountns.WouldDetach], by[mountns.Gone], by[mountns.Failed]+by[mountns.Refused], remaining)
	if rep.DryRun {
		s = strings.Replace(s, "detached", "would detach", 1)
	}
	if ns.Error != "" {
		s += ": " + ns.Error
	}
	return s
}
