package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/mountns"
)

// Verdict says whether a leaked mount can go.
type Verdict string

// Verdicts of a Leak.
const (
	// Stale: no live container uses the mounted filesystem; the copy only
	// blocks the removal of its layer. Detaching it is safe.
	Stale Verdict = "stale"
	// Pinned: a live container uses the filesystem (it is the container's
	// root, lies inside it, or is the same layer or superblock as something a
	// container has mounted). Detaching a copy frees nothing while the
	// container runs; the container's own mounts are never detached.
	Pinned Verdict = "pinned"
)

// EngineCommands are the command names (/proc/PID/comm) of container
// engines: a namespace with one of them in it is the engine's own, and its
// mounts are the engine's business, not leaks.
var EngineCommands = []string{"dockerd"}

// Process is one process of a namespace that holds leaked mounts.
type Process struct {
	PID int `json:"pid"`
	// Command is /proc/PID/comm.
	Command string `json:"command"`
	// Started is the process's start time (/proc/PID/stat field 22 and the
	// boot time of /proc/stat); zero when it exited meanwhile.
	Started time.Time `json:"started,omitempty"`
}

// Leak is one mount under the root that a namespace other than the caller's
// has mounted.
type Leak struct {
	mountns.Mount
	// LayerID is the overlay2 layer the mount belongs to, from its place
	// (<root>/overlay2/<id>/merged) or its upperdir (<root>/overlay2/<id>/diff);
	// empty for other mounts.
	LayerID string  `json:"layer_id,omitempty"`
	Verdict Verdict `json:"verdict"`
	// Why explains the verdict in one phrase.
	Why string `json:"why"`
	// InUse is true for a mount that belongs to a running workload rather
	// than a leaked copy: a live container's root or a mount inside it, or a
	// mount in the engine's own namespace. It is never detached and does not
	// count as a leak.
	InUse bool `json:"in_use,omitempty"`
}

// LeakNamespace is one namespace that holds mounts under the root.
type LeakNamespace struct {
	mountns.Namespace
	Processes []Process `json:"processes"`
	// Container is true when the namespace's root directory is a mount under
	// the data root: a running container's namespace.
	Container bool `json:"container,omitempty"`
	// Engine is true when a container engine (EngineCommands) runs in it.
	Engine bool   `json:"engine,omitempty"`
	Leaks  []Leak `json:"mounts"`
	holder mountns.Holder
}

// LeakScan is the outcome of FindLeaks.
type LeakScan struct {
	// Root is the data root scanned, symlinks resolved.
	Root string `json:"root"`
	// Scanned is how many mount namespaces the machine has (the caller's
	// included); each was read once.
	Scanned    int             `json:"namespaces_scanned"`
	Duration   time.Duration   `json:"duration_ns"`
	Namespaces []LeakNamespace `json:"namespaces"`
}

// Count returns how many leaked mounts (InUse ones excluded) have each
// verdict.
func (s LeakScan) Count() map[Verdict]int {
	n := map[Verdict]int{Stale: 0, Pinned: 0}
	for _, ns := range s.Namespaces {
		for _, l := range ns.Leaks {
			if !l.InUse {
				n[l.Verdict]++
			}
		}
	}
	return n
}

// Leaked reports how many mounts are leaked copies (not InUse).
func (s LeakScan) Leaked() int {
	n := s.Count()
	return n[Stale] + n[Pinned]
}

// Holders returns, for mountns.DetachHolders, the namespaces and mounts
// that keep selects, leaving out namespaces with none. InUse mounts are never
// returned.
func (s LeakScan) Holders(keep func(Leak) bool) []mountns.Holder {
	var out []mountns.Holder
	for _, ns := range s.Namespaces {
		h := ns.holder
		h.Mounts = nil
		for _, l := range ns.Leaks {
			if !l.InUse && keep(l) {
				h.Mounts = append(h.Mounts, l.Mount)
			}
		}
		if len(h.Mounts) > 0 {
			out = append(out, h)
		}
	}
	return out
}

// InputError says that an input (a flag, a file, a pid) is not usable, and
// what to do; nothing was changed.
type InputError struct {
	// What names the input ("--root", "daemon config", "--pid").
	What string
	// Value is the input as given.
	Value string
	// Reason says what is wrong and what to do.
	Reason string
}

func (e *InputError) Error() string {
	return fmt.Sprintf("%s %s: %s", e.What, e.Value, e.Reason)
}

// FindLeaks lists every mount under root that a mount namespace other than
// the caller's has mounted, grouped by namespace, each with a verdict. The
// caller is the process whose namespace is "here" (0: this process; Doctor
// passes dockerd). It reads each namespace's mount table once
// (mountns.FindHolders) and changes nothing. opts are passed to mountns
// (WithParallelism, WithLister).
//
// The verdict rule, per mount M held in namespace N:
//   - M is N's root directory ("/"): a running container's rootfs. Pinned,
//     in use.
//   - The caller has the same filesystem (device) mounted at the same place:
//     a replica (propagated, or copied when N was made) of a mount that its
//     owner still has. Pinned, in use: it is not leaked (yet).
//   - N's root is a mount under the root (a container's namespace) and M is
//     not an overlay of another layer: the container's own mount (/proc,
//     /dev/shm, /etc/hosts inside its rootfs). Pinned, in use.
//   - N runs a container engine (EngineCommands): the engine's own mount.
//     Pinned, in use.
//   - M is an overlay whose upperdir is the upperdir of some namespace's root:
//     a copy of a running container's layer, same superblock or not. Pinned.
//   - M's filesystem is an anonymous superblock (major 0: overlay, tmpfs) that
//     some container namespace has mounted too: a live container uses it
//     (its shm, a volume). Pinned.
//   - Otherwise: stale.
//
// The data root's own mount (a separate disk mounted at root) is not a leak
// and is left out.
func FindLeaks(ctx context.Context, root string, caller int, opts ...mountns.Option) (LeakScan, error) {
	start := time.Now()
	real, err := checkRoot(root)
	if err != nil {
		return LeakScan{Root: root}, err
	}
	if caller == 0 {
		caller = os.Getpid()
	}
	lister := &countingLister{inner: mountns.SystemLister{}}
	opts = append([]mountns.Option{mountns.WithLister(lister), mountns.WithCaller(caller)}, opts...)
	holders, err := mountns.FindHolders(ctx, real, opts...)
	if err != nil {
		return LeakScan{Root: real}, err
	}
	scan, err := Classify(real, holders, caller)
	scan.Scanned = int(lister.n.Load())
	scan.Duration = time.Since(start)
	return scan, err
}

// Classify gives each mount of holders (as mountns.FindHolders returned them
// for root or a path under it, with the same caller) a verdict, by the rule
// of FindLeaks. A namespace is only recognised as a container's when its
// root mount is among its mounts, which a FindHolders of a layer's merged
// directory includes (it matches by upperdir). Callers that detach a single
// path use it to leave the mounts of running workloads alone.
func Classify(root string, holders []mountns.Holder, caller int) (LeakScan, error) {
	real, err := checkRoot(root)
	if err != nil {
		return LeakScan{Root: root}, err
	}
	if caller == 0 {
		caller = os.Getpid()
	}
	own, err := mountinfo.PidMountInfo(caller)
	if err != nil {
		return LeakScan{Root: real}, fmt.Errorf("mount table of caller pid %d: %w", caller, err)
	}
	scan := LeakScan{Root: real}
	classify(&scan, holders, own)
	return scan, nil
}

// checkRoot resolves root and refuses one that is missing or not a
// directory.
func checkRoot(root string) (string, error) {
	fix := "give the engine's data root (dockerd --data-root; default /var/lib/docker)"
	if root == "" || !filepath.IsAbs(root) {
		return "", &InputError{What: "--root", Value: strconv.Quote(root), Reason: "not an absolute path: " + fix}
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(root))
	if err != nil {
		if os.IsNotExist(err) {
			return "", &InputError{What: "--root", Value: root, Reason: "does not exist: " + fix}
		}
		return "", &InputError{What: "--root", Value: root, Reason: err.Error()}
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", &InputError{What: "--root", Value: root, Reason: "is not a directory: " + fix}
	}
	if real == "/" {
		return "", &InputError{What: "--root", Value: root, Reason: "is /: " + fix}
	}
	return real, nil
}

// countingLister counts the namespaces that a scan enumerated.
type countingLister struct {
	inner mountns.Lister
	n     atomic.Int64
}

func (c *countingLister) List(ctx context.Context) ([]mountns.Namespace, error) {
	nss, err := c.inner.List(ctx)
	c.n.Store(int64(len(nss)))
	return nss, err
}

type dev struct{ major, minor int }

func classify(scan *LeakScan, holders []mountns.Holder, caller []*mountinfo.Info) {
	type place struct {
		dev
		path string
	}
	here := map[place]bool{}
	for _, m := range caller {
		here[place{dev{m.Major, m.Minor}, m.Mountpoint}] = true
	}
	// What live containers run on: the upperdirs of namespace roots, and
	// every anonymous superblock a container namespace has mounted.
	rootUppers := map[string]string{}
	containerRoot := map[uint64]mountns.Mount{}
	for _, h := range holders {
		for _, m := range h.Mounts {
			if m.HolderRoot {
				containerRoot[h.Inode] = m
				if m.UpperDir != "" {
					rootUppers[m.UpperDir] = fmt.Sprintf("mnt:[%d]", h.Inode)
				}
			}
		}
	}
	containerDevs := map[dev]string{}
	for _, h := range holders {
		if _, ok := containerRoot[h.Inode]; !ok {
			continue
		}
		for _, m := range h.Mounts {
			if m.Major == 0 {
				containerDevs[dev{m.Major, m.Minor}] = fmt.Sprintf("mnt:[%d]", h.Inode)
			}
		}
	}

	for _, h := range holders {
		ns := LeakNamespace{Namespace: h.Namespace, Processes: processes(h.PIDs), holder: h}
		var rootMount mountns.Mount
		rootMount, ns.Container = containerRoot[h.Inode]
		ns.Engine = isEngine(h.Commands)
		for _, m := range h.Mounts {
			if m.HostPath == scan.Root {
				continue
			}
			l := Leak{Mount: m, LayerID: layerID(scan.Root, m)}
			switch {
			case m.HolderRoot:
				l.Verdict, l.InUse, l.Why = Pinned, true, "the root directory of a live container"
			case m.HostPath != "" && here[place{dev{m.Major, m.Minor}, m.HostPath}]:
				l.Verdict, l.InUse, l.Why = Pinned, true, "the caller has it mounted too: a replica, not leaked"
			case ns.Container && (m.FSType != "overlay" || m.UpperDir == rootMount.UpperDir):
				l.Verdict, l.InUse, l.Why = Pinned, true, "mounted inside a live container's root"
			case ns.Engine:
				l.Verdict, l.InUse, l.Why = Pinned, true, "the container engine's own mount (its namespace)"
			case m.UpperDir != "" && rootUppers[m.UpperDir] != "":
				l.Verdict, l.Why = Pinned, "same layer as the root of the live container in "+rootUppers[m.UpperDir]
			case m.Major == 0 && containerDevs[dev{m.Major, m.Minor}] != "":
				l.Verdict, l.Why = Pinned, fmt.Sprintf("same filesystem (dev %d:%d) as a mount of the live container in %s", m.Major, m.Minor, containerDevs[dev{m.Major, m.Minor}])
			default:
				l.Verdict, l.Why = Stale, "no live container uses it"
			}
			ns.Leaks = append(ns.Leaks, l)
		}
		if len(ns.Leaks) > 0 {
			scan.Namespaces = append(scan.Namespaces, ns)
		}
	}
}

func isEngine(commands []string) bool {
	for _, c := range commands {
		for _, e := range EngineCommands {
			if c == e {
				return true
			}
		}
	}
	return false
}

// layerID names the overlay2 layer of a mount: <root>/overlay2/<id>/merged
// by place, or <root>/overlay2/<id>/diff by upperdir.
func layerID(root string, m mountns.Mount) string {
	base := filepath.Join(root, "overlay2") + "/"
	for _, c := range []struct{ p, leaf string }{{m.HostPath, "merged"}, {m.UpperDir, "diff"}} {
		if rest, ok := strings.CutPrefix(c.p, base); ok {
			if id, leaf, ok := strings.Cut(rest, "/"); ok && leaf == c.leaf && id != "" {
				return id
			}
		}
	}
	return ""
}

// processes describes pids: command and start time.
func processes(pids []int) []Process {
	boot := bootTime()
	out := make([]Process, 0, len(pids))
	for _, pid := range pids {
		p := Process{PID: pid}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
			p.Command = strings.TrimSpace(string(b))
		}
		if ticks, ok := startTicks(pid); ok && !boot.IsZero() {
			// /proc reports in USER_HZ, which is 100 on every Linux ABI.
			p.Started = boot.Add(time.Duration(ticks) * (time.Second / 100)).UTC()
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// startTicks reads field 22 of /proc/PID/stat; the command (field 2) may
// contain spaces and parentheses, so fields are counted after its last ')'.
func startTicks(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	t, err := strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the command
	return t, err == nil
}

func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}
