package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/pkg/errors"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func newDetachCommand(stdout io.Writer) *cobra.Command {
	var cfg detachConfig
	cmd := &cobra.Command{
		Use:   "detach [PATH] --root DIR [--stale-only] [--dry-run]",
		Short: "Detach leaked mounts inside the namespaces that hold them",
		Long: `detach unmounts (umount2 MNT_DETACH) mounts that leaked into other mount
namespaces, inside each of those namespaces, one setns per namespace. Only
mounts under --root (the engine's data root) are ever touched. Each mount point
is resolved in the holder's view without following symlinks and must still be
the mount that was scanned (mount id and device), or it is refused.

Without PATH, detach cleans the whole data root in one pass: it scans as
'nsdetach scan --root DIR' does and detaches every leaked mount, stale or
pinned, or with --stale-only the stale ones only (no live container uses them).
Mounts in use by a running workload are never touched: a container's root
directory and the mounts inside it, the engine's own namespace, replicas of
mounts that nsdetach's namespace still has. Detaching a pinned copy (a running
container's layer still mounted in an old daemon namespace) is harmless: the
container keeps its own mount, and its later removal no longer hits EBUSY. On a
terminal a progress line is printed per namespace; the last line is a summary:
found, detached, remaining, failed.

With PATH (a mount point under --root), detach handles that mount and the
mounts below it: every foreign copy of it is detached, wherever it is, except
the mounts of running workloads as above (a container's root and the mounts
inside it, the engine's namespace), which are named as "left alone".

Exit status: 0 when nothing selected remains and nothing failed (with
--dry-run: when there was nothing to do), 1 when something remains, was
refused or failed, 2 on bad input (a --root that does not exist, PATH outside
--root) or without the privileges to read other namespaces (run as root):
nothing is touched then.`,
		Example: `  # after a dockerd restart: clean what blocks 'docker rm'
  nsdetach detach --root /var/lib/docker --stale-only
  # see first what would go
  nsdetach detach --root /var/lib/docker --dry-run
  # one layer, wherever it is mounted
  nsdetach detach /var/lib/docker/overlay2/3f1c.../merged --root /var/lib/docker`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDetach(cmd.Context(), stdout, cfg, args)
		},
	}
	cmd.Flags().StringVar(&cfg.root, "root", "", "the engine's data root; nothing outside it is touched (required)")
	cmd.Flags().BoolVar(&cfg.dryRun, "dry-run", false, "resolve and verify every mount, detach nothing")
	cmd.Flags().BoolVar(&cfg.staleOnly, "stale-only", false, "without PATH: detach only stale leaks (no live container uses them)")
	cmd.Flags().BoolVar(&cfg.asJSON, "json", false, "print the report as one JSON document")
	return cmd
}

// detachConfig is what detach runs with: its flags.
type detachConfig struct {
	root      string
	dryRun    bool
	staleOnly bool
	asJSON    bool
}

// runDetach is detach: the whole data root without PATH (detachRoot), one
// mount point and what is below it with PATH (detachPath).
func runDetach(ctx context.Context, stdout io.Writer, cfg detachConfig, args []string) error {
	if cfg.root == "" {
		return usageError(errors.New("--root DIR is required: the engine's data root, outside which nothing is touched"))
	}
	if len(args) == 0 {
		return detachRoot(ctx, stdout, cfg)
	}
	if cfg.staleOnly {
		return usageError(errors.New("--stale-only works on the whole data root: drop PATH, or drop --stale-only to detach every foreign copy of PATH"))
	}
	return detachPath(ctx, stdout, cfg, args[0])
}

// detachPath is detach with PATH: every foreign copy of target and of the
// mounts below it, but the mounts of running workloads.
func detachPath(ctx context.Context, stdout io.Writer, cfg detachConfig, target string) error {
	// Refuse a bad PATH or root before scanning: a pass over no holders only
	// checks them.
	if _, err := mountns.DetachHolders(ctx, target, nil, mountns.WithRoot(cfg.root), mountns.WithDryRun(true)); err != nil {
		return classify(err)
	}
	holders, err := mountns.FindHolders(ctx, scanPath(cfg.root, target), overlay2.Layout())
	if err != nil {
		return classify(err)
	}
	// Leave running workloads alone: a live container's mounts inside its
	// root, the engine's own namespace.
	scan, err := daemon.Classify(cfg.root, holders, 0)
	if err != nil {
		return classify(err)
	}
	rep, err := mountns.DetachHolders(ctx, target, scan.Holders(func(daemon.Leak) bool { return true }),
		mountns.WithRoot(cfg.root), mountns.WithDryRun(cfg.dryRun))
	var de *mountns.DetachError
	if err != nil && !errors.As(err, &de) {
		return classify(err)
	}
	if rep.Namespaces == nil {
		rep.Namespaces = []mountns.NamespaceReport{} // JSON: [], not null
	}
	if err := emit(stdout, cfg.asJSON, rep, func() {
		printReport(stdout, rep)
		printInUse(stdout, scan)
	}); err != nil {
		return err
	}
	return found(err != nil || (cfg.dryRun && len(rep.Namespaces) > 0))
}

// scanPath is target as the mount tables name it: symlinks resolved, as
// mountns resolves it (within the root) before it detaches.
func scanPath(root, target string) string {
	if p, err := filepath.EvalSymlinks(target); err == nil {
		return p
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return target
	}
	if rest, ok := strings.CutPrefix(target, root+"/"); ok {
		return filepath.Join(realRoot, rest)
	}
	return target
}

// printInUse names the mounts that were left alone because a running
// workload uses them.
func printInUse(w io.Writer, scan daemon.LeakScan) {
	for _, ns := range scan.Namespaces {
		for _, l := range ns.Leaks {
			if l.InUse {
				fmt.Fprintf(w, "%s: left alone %s (mount %d): %s\n", describeNamespace(ns), l.Mountpoint, l.ID, l.Why)
			}
		}
	}
}

// detachRoot is detach without PATH: one pass over every leak under root.
func detachRoot(ctx context.Context, stdout io.Writer, cfg detachConfig) error {
	staleOnly, dryRun := cfg.staleOnly, cfg.dryRun
	scan, err := daemon.FindLeaks(ctx, cfg.root, 0)
	if err != nil {
		return classify(err)
	}
	var progress func(int, int, mountns.Report)
	if !cfg.asJSON && isTerminal(stdout) {
		progress = func(done, total int, rep mountns.Report) {
			fmt.Fprintln(stdout, namespaceProgress(done, total, rep))
		}
	}
	pass, err := detachLeaks(ctx, scan, staleOnly, dryRun, progress)
	if err != nil {
		return classify(err)
	}
	if pass.Reports == nil {
		pass.Reports = []mountns.Report{} // JSON: [], not null
	}
	if scan.Namespaces == nil {
		scan.Namespaces = []daemon.LeakNamespace{}
	}
	out := struct {
		Root      string          `json:"root"`
		DryRun    bool            `json:"dry_run"`
		StaleOnly bool            `json:"stale_only"`
		Summary   leakPass        `json:"summary"`
		Scan      daemon.LeakScan `json:"scan"`
	}{scan.Root, dryRun, staleOnly, pass, scan}
	if err := emit(stdout, cfg.asJSON, out, func() {
		for _, rep := range pass.Reports {
			for _, ns := range rep.Namespaces {
				for _, m := range ns.Result {
					if m.Action == mountns.Failed || m.Action == mountns.Refused {
						fmt.Fprintf(stdout, "%s: %s %s (mount %d): %s\n", who(ns.Namespace, ns.Commands), m.Action, m.Mountpoint, m.ID, m.Reason)
					}
				}
			}
		}
		fmt.Fprintln(stdout, passSummary(pass, scan, staleOnly, dryRun))
	}); err != nil {
		return err
	}
	left := pass.Remaining - (pass.Found - pass.Selected) // selected ones still mounted
	return found(pass.Failed > 0 || left > 0 || (dryRun && pass.Selected > 0))
}

func passSummary(p leakPass, scan daemon.LeakScan, staleOnly, dryRun bool) string {
	n := scan.Count()
	verb := "detached"
	if dryRun {
		verb = "would detach"
	}
	s := fmt.Sprintf("summary: found %d leaked mounts under %s in %d namespaces (%d stale, %d pinned); %s %d",
		p.Found, scan.Root, len(p.Reports), n[daemon.Stale], n[daemon.Pinned], verb, p.Detached)
	if p.Gone > 0 {
		s += fmt.Sprintf(", %d gone with their namespace", p.Gone)
	}
	s += fmt.Sprintf("; remaining %d", p.Remaining)
	if staleOnly && n[daemon.Pinned] > 0 {
		s += fmt.Sprintf(" (%d pinned left alone: --stale-only)", n[daemon.Pinned])
	}
	return s + fmt.Sprintf("; failed %d", p.Failed)
}

// isTerminal reports whether w is a terminal (progress lines go only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// printReport writes one line per namespace and a summary line.
func printReport(w io.Writer, rep mountns.Report) {
	if len(rep.Namespaces) == 0 {
		fmt.Fprintf(w, "no other mount namespace holds %s\n", rep.Target)
		return
	}
	for _, ns := range rep.Namespaces {
		var parts []string
		if ns.Error != "" {
			parts = append(parts, "error: "+ns.Error)
		}
		for _, m := range ns.Result {
			s := fmt.Sprintf("%s %s (mount %d)", m.Action, m.Mountpoint, m.ID)
			if m.Reason != "" {
				s += ": " + m.Reason
			}
			if m.Remains && m.Action != mountns.WouldDetach {
				s += " [still mounted]"
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(w, "%s: %s\n", who(ns.Namespace, ns.Commands), strings.Join(parts, "; "))
	}
	by, remaining := rep.Count()
	var counts []string
	for a, n := range by {
		counts = append(counts, fmt.Sprintf("%d %s", n, a))
	}
	sort.Strings(counts)
	fmt.Fprintf(w, "summary: %d namespaces: %s; %d remaining\n", len(rep.Namespaces), strings.Join(counts, ", "), remaining)
}
