package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nsdetach/nsdetach/integration/oldkernel"
	"github.com/nsdetach/nsdetach/integration/replay"
)

func main() {
	oldkernel.Init()
	replay.Init()
	if len(os.Args) > 1 {
		fmt.Fprintf(os.Stderr, "usage: %s (no arguments; needs root)\n", os.Args[0])
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "replay: needs root (it makes mount namespaces, overlay mounts and a seccomp listener); run: sudo make demo")
		os.Exit(2)
	}
	os.Exit(run(os.Stdout))
}

// plays are run at once (the stock removals spend 5 s each in moby's retry
// loop) and printed in this order.
var plays = []replay.Config{
	{Scenario: replay.Incident, Path: replay.Stock},
	{Scenario: replay.Incident, Path: replay.Wrapped},
	{Scenario: replay.Incident, Path: replay.Patched},
	{Scenario: replay.ForceRemove, Path: replay.Stock, Policy: replay.Forget},
	{Scenario: replay.ForceRemove, Path: replay.Stock, Policy: replay.Keep},
	{Scenario: replay.ForceRemove, Path: replay.Wrapped, Policy: replay.Keep},
}

func run(w io.Writer) int {
	tmp, err := os.MkdirTemp("", "nsdetach-replay-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "replay:", err)
		return 2
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	outs := make([]replay.Outcome, len(plays))
	errs := make([]error, len(plays))
	var wg sync.WaitGroup
	for i, cfg := range plays {
		cfg.Dir = fmt.Sprintf("%s/%d", tmp, i)
		if err := os.Mkdir(cfg.Dir, 0o700); err != nil {
			fmt.Fprintln(os.Stderr, "replay:", err)
			return 2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = replay.Play(ctx, cfg, os.Stderr)
		}()
	}
	fmt.Fprintln(w, "The incident (docs/incident.md), replayed on an emulated pre-3.18 kernel: rmdir of a directory")
	fmt.Fprintln(w, "that any mount namespace has as a mount point fails with EBUSY (integration/oldkernel).")
	fmt.Fprintln(w, "Each replay: daemon A mounts a container layer with moby v28.5.2's overlay2 and is restarted;")
	fmt.Fprintln(w, "its shim keeps namespace A alive; daemon A' (new namespace, same data root) removes the layer.")
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			fmt.Fprintf(os.Stderr, "replay %s/%s: %v\n", plays[i].Scenario, plays[i].Path, err)
			return 2
		}
	}

	ok := true
	for i, o := range outs[:3] {
		fmt.Fprintf(w, "\n== %d. %s\n", i+1, title(o.Config))
		steps(w, o)
		ok = expect(w, o, o.Config.Path != replay.Stock) && ok
	}
	incidentSummary(w, outs[:3])
	forceRemoveSummary(w, outs[3:])
	for _, o := range outs[3:] {
		ok = expect(w, o, o.Config.Path != replay.Stock) && ok
	}
	if !ok {
		fmt.Fprintln(w, "\nreplay: the replay did not go as expected (see above)")
		return 1
	}
	if err := os.RemoveAll(tmp); err != nil {
		fmt.Fprintln(w, "\nreplay: cleaning up:", err)
		return 1
	}
	fmt.Fprintln(w, "\nreplay: done; every process and mount of the replay is gone, and so is", tmp)
	return 0
}

func title(c replay.Config) string {
	switch c.Path {
	case replay.Stock:
		return "stock: moby v28.5.2 overlay2 Put and Remove, as released"
	case replay.Wrapped:
		return "nsdetach: overlay2-nsdetach (overlay2/mobydriver) around the same moby driver"
	default:
		return "nsdetach: the patch series' calls (overlay2.Unmount in Put, daemon.EnsureRemoveAll in Remove)"
	}
}

// steps prints one incident replay, paths relative to its data root.
func steps(w io.Writer, o replay.Outcome) {
	short := strings.NewReplacer(o.DataRoot, "$ROOT").Replace
	fmt.Fprintf(w, "   ROOT=%s\n", o.DataRoot)
	fmt.Fprintf(w, "   daemon A   pid %-7d A  = mnt:[%d]  Get(c1): overlay mounted on %s\n", o.DaemonA.PID, o.DaemonA.Namespace, short(o.Merged))
	fmt.Fprintf(w, "   shim       pid %-7d A  = mnt:[%d]  containerd-shim keeps A alive; daemon A exits (restart with live-restore)\n", o.Shim.PID, o.Shim.Namespace)
	fmt.Fprintf(w, "   daemon A'  pid %-7d A' = mnt:[%d]  starts in a new namespace (MountFlags=slave), same data root\n", o.DaemonA2.PID, o.DaemonA2.Namespace)
	fmt.Fprintln(w, "   what the kernel said reaches daemon A' as errors and log lines:")
	for _, c := range o.Calls {
		res := "returned nil"
		if c.Err != "" {
			res = "failed: " + short(c.Err)
		}
		fmt.Fprintf(w, "   %-10s %s after %s\n", c.Op, res, dur(c.Took))
		for _, l := range c.Log {
			fmt.Fprintf(w, "       log %s\n", short(logLine(l)))
		}
	}
	a := o.After
	fmt.Fprintf(w, "   after:     layer directory %s; merged %s in the shim's namespace; shim %s; rmdir answered EBUSY %d times\n",
		yes(a.LayerExists, "left behind", "removed"), yes(a.ShimHoldsMerged, "still mounted", "not mounted"),
		yes(a.ShimAlive, "running", "gone"), o.Emulator.Busy)
}

// logLine prints what the kernel said, as the code under test logged it.
func logLine(l replay.LogLine) string {
	f := l.Fields
	var s string
	if l.Message == "mountns: foreign mount" {
		s = fmt.Sprintf("%s: mountns: %s %s in mnt:[%s] (pids %s)", l.Level, f["action"], f["mountpoint"], f["namespace"], strings.Trim(f["pids"], "[]"))
	} else {
		var kv []string
		for k, v := range f {
			if k != "storage-driver" {
				kv = append(kv, k+"="+v)
			}
		}
		sort.Strings(kv)
		s = fmt.Sprintf("%s: %s", l.Level, l.Message)
		if len(kv) > 0 {
			s += " (" + strings.Join(kv, ", ") + ")"
		}
	}
	if who := f["storage-driver"]; who != "" {
		s = "[" + who + "] " + s
	}
	return s
}

func incidentSummary(w io.Writer, outs []replay.Outcome) {
	fmt.Fprintln(w, "\n== Side by side")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, o := range outs {
		fmt.Fprintf(tw, "\t%s", map[replay.Path]string{replay.Stock: "moby v28.5.2 (stock)", replay.Wrapped: "overlay2-nsdetach", replay.Patched: "patch series"}[o.Config.Path])
	}
	fmt.Fprintln(tw)
	row := func(name string, f func(replay.Outcome) string) {
		fmt.Fprint(tw, name)
		for _, o := range outs {
			fmt.Fprint(tw, "\t"+f(o))
		}
		fmt.Fprintln(tw)
	}
	row("Put(c1)", func(o replay.Outcome) string {
		c, _ := o.Call("Put(c1)")
		var said []string
		for _, l := range c.Log {
			switch {
			case strings.HasSuffix(l.Message, "invalid argument"):
				said = append(said, "umount EINVAL")
			case strings.HasSuffix(l.Message, "device or resource busy"):
				said = append(said, "rmdir EBUSY")
			case l.Message == "mountns: foreign mount":
				said = append(said, l.Fields["action"]+" in A")
			}
		}
		return "nil; " + strings.Join(said, ", ")
	})
	row("Remove(c1)", func(o replay.Outcome) string {
		c, _ := o.Call("Remove(c1)")
		if c.Err != "" {
			return c.Errno + " on .../merged after " + dur(c.Took)
		}
		return "ok after " + dur(c.Took)
	})
	row("layer directory", func(o replay.Outcome) string { return yes(o.After.LayerExists, "left behind", "removed") })
	row("mount in shim's namespace", func(o replay.Outcome) string {
		return yes(o.After.ShimHoldsMerged, "still there", "detached")
	})
	row("shim (the container)", func(o replay.Outcome) string { return yes(o.After.ShimAlive, "running", "gone") })
	row("rmdir answered EBUSY", func(o replay.Outcome) string { return fmt.Sprint(o.Emulator.Busy, " times") })
	tw.Flush()
	stock := outs[0]
	if c, _ := stock.Call("Remove(c1)"); c.Err != "" {
		fmt.Fprintf(w, "\nkubelet would show, for the stock daemon:\n  driver \"overlay2\" failed to remove root filesystem: %s\n", c.Err)
	}
}

func forceRemoveSummary(w io.Writer, outs []replay.Outcome) {
	fmt.Fprintln(w, "\n== docker rm -f of the same container (cleanupContainer: layer, then container directory with its shm mount)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "daemon A'\tcontainer\troot left behind\tmounts left in other namespaces")
	for _, o := range outs {
		name := "nsdetach (overlay2-nsdetach, daemon.EnsureRemoveAll)"
		if o.Config.Path == replay.Stock {
			name = map[replay.Policy]string{replay.Forget: "moby 1.13.1", replay.Keep: "moby 18.06.3-ce .. v28.5.2"}[o.Config.Policy]
		}
		state := "removed"
		switch {
		case o.RemovalError != "":
			state = "kept: Removal In Progress"
		case o.Forgotten && (o.After.LayerExists || len(o.After.Mounts) > 0):
			state = "forgotten (silently)"
		}
		var left []string
		if o.After.LayerExists {
			left = append(left, "layer")
		}
		if o.After.ContainerRootExists {
			left = append(left, "container dir")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", name, state, yes(len(left) > 0, strings.Join(left, ", "), "no"), len(o.After.Mounts))
	}
	tw.Flush()
}

// expect checks that o went as the incident says: the stock path fails
// with EBUSY and leaves the mount, nsdetach's paths leave nothing.
func expect(w io.Writer, o replay.Outcome, clean bool) bool {
	a := o.After
	left := a.LayerExists || a.ContainerRootExists || len(a.Mounts) > 0
	if clean == !left && a.ShimAlive {
		return true
	}
	fmt.Fprintf(w, "UNEXPECTED: %s/%s/%s: left behind %v (mounts %v), shim alive %v\n", o.Config.Scenario, o.Config.Path, o.Config.Policy, left, a.Mounts, a.ShimAlive)
	return false
}

func yes(b bool, t, f string) string {
	if b {
		return t
	}
	return f
}

func dur(d time.Duration) string {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
