package daemon

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
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
	LayerID string `json:"layer_id,omitempty"`
	// Snapshotter and ContainerID name the container whose rootfs the mount
	// is, in the containerd image store's layout
	// (<root>/rootfs/<snapshotter>/<container id>); empty for other mounts.
	Snapshotter string  `json:"snapshotter,omitempty"`
	ContainerID string  `json:"container_id,omitempty"`
	Verdict     Verdict `json:"verdict"`
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
// what to do; nothing was changed. errors.Is and errors.As find its cause
// through it (fs.ErrNotExist for a data root or a config file that does not
// exist).
type InputError struct {
	// What names the input ("--root", "daemon config", "--pid").
	What string
	// Value is the input as given.
	Value string
	// Reason says what is wrong and what to do; when empty, Err says it.
	Reason string
	// Err is the cause, if there is one.
	Err error
}

func (e *InputError) Error() string {
	reason := e.Reason
	if reason == "" && e.Err != nil {
		reason = e.Err.Error()
	}
	return fmt.Sprintf("%s %s: %s", e.What, e.Value, reason)
}

// Unwrap returns the cause.
func (e *InputError) Unwrap() error { return e.Err }

// FindLeaks lists every mount under root that a mount namespace other than
// the caller's has mounted, grouped by namespace, each with a verdict. The
// caller is the process whose namespace is "here" (0: this process; Doctor
// passes dockerd). It reads each namespace's mount table once
// (mountns.FindHolders) and changes nothing. opts are passed to mountns
// (WithLister).
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
//   - The caller runs in a container of the engine (its root is an overlay
//     with its upperdir under the root: the DaemonSet's pod) and M is that
//     filesystem (same superblock or same upperdir): the caller's own root.
//     Pinned, in use.
//   - N runs a container engine (EngineCommands, any of its processes): the
//     engine's own mount. Pinned, in use.
//   - M is an overlay whose upperdir is the upperdir of some namespace's root:
//     a copy of a running container's layer, same superblock or not. Pinned.
//   - M's filesystem is an anonymous superblock (major 0: overlay, tmpfs) that
//     something live has mounted too: any mount of a container's namespace,
//     wherever it lies (the /dev/shm of a container run with --ipc shareable
//     is the tmpfs of <root>/containers/<id>/mounts/shm), a mount of the
//     engine's namespace, or one of the caller's. Pinned.
//   - Otherwise: stale. No live process has the filesystem mounted.
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
	own, err := pidTable(caller, 0)
	if err != nil {
		return LeakScan{Root: real}, errors.Wrapf(err, "mount table of caller pid %d", caller)
	}
	scan := LeakScan{Root: real}
	procs := make([][]Process, len(holders))
	for i, h := range holders {
		procs[i] = processes(h.PIDs)
	}
	live, err := liveSuperblocks(holders, procs, own)
	if err != nil {
		return scan, err
	}
	classify(&scan, holders, procs, own, live)
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
			return "", &InputError{What: "--root", Value: root, Reason: "does not exist: " + fix, Err: err}
		}
		return "", &InputError{What: "--root", Value: root, Err: err}
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

// classify gives each mount of holders its verdict; procs are the
// processes of each holder.
func classify(scan *LeakScan, holders []mountns.Holder, procs [][]Process, caller []*mountinfo.Info, live map[dev]string) {
	type place struct {
		dev
		path string
	}
	here := map[place]bool{}
	for _, m := range caller {
		here[place{dev{m.Major, m.Minor}, m.Mountpoint}] = true
	}
	// What live containers run on: the upperdirs of namespace roots.
	rootUppers := map[string]string{}
	for _, h := range holders {
		if m, ok := containerRoot(h); ok && m.UpperDir != "" {
			rootUppers[m.UpperDir] = fmt.Sprintf("mnt:[%d]", h.Inode)
		}
	}

	own := ownLayer(caller, scan.Root)
	engineMounted := engineRootfs(scan.Root, holders, procs, caller)

	for i, h := range holders {
		ns := LeakNamespace{Namespace: h.Namespace, Processes: procs[i], holder: h}
		rootMount, container := containerRoot(h)
		ns.Container = container
		ns.Engine = isEngine(procs[i])
		for _, m := range h.Mounts {
			if m.HostPath == scan.Root {
				continue
			}
			l := Leak{Mount: m, LayerID: layerID(scan.Root, m)}
			l.Snapshotter, l.ContainerID = rootfsOf(scan.Root, m)
			switch {
			case m.HolderRoot:
				l.Verdict, l.InUse, l.Why = Pinned, true, "the root directory of a live container"
			case own != nil && (m.UpperDir == own.upper || m.Major == own.major && m.Minor == own.minor):
				l.Verdict, l.InUse, l.Why = Pinned, true, "the root filesystem of the caller's own container"
			case m.HostPath != "" && here[place{dev{m.Major, m.Minor}, m.HostPath}]:
				l.Verdict, l.InUse, l.Why = Pinned, true, "the caller has it mounted too: a replica, not leaked"
			case ns.Container && (m.FSType != "overlay" || m.UpperDir == rootMount.UpperDir):
				l.Verdict, l.InUse, l.Why = Pinned, true, "mounted inside a live container's root"
			case ns.Engine:
				l.Verdict, l.InUse, l.Why = Pinned, true, "the container engine's own mount (its namespace)"
			case l.ContainerID != "" && engineMounted[m.HostPath] != "":
				l.Verdict, l.Why = Pinned, "the rootfs of container "+l.ContainerID+", which the engine has mounted in "+engineMounted[m.HostPath]+": a live container"
			case m.UpperDir != "" && rootUppers[m.UpperDir] != "":
				l.Verdict, l.Why = Pinned, "same layer as the root of the live container in "+rootUppers[m.UpperDir]
			case m.Major == 0 && live[dev{m.Major, m.Minor}] != "":
				l.Verdict, l.Why = Pinned, fmt.Sprintf("same filesystem (dev %d:%d) as %s", m.Major, m.Minor, live[dev{m.Major, m.Minor}])
			case l.ContainerID != "":
				l.Verdict, l.Why = Stale, staleRootfsWhy(scan.Root, l.ContainerID)
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

// layer is an overlay that a container runs on: its device and upperdir.
type layer struct {
	dev
	upper string
}

// ownLayer returns the caller's root filesystem when the caller runs in a
// container of the engine (a DaemonSet's pod): an overlay whose upperdir lies
// under the data root. Every copy of it is that container's, in use while the
// caller runs, whatever namespace holds it and whatever the engine is called.
func ownLayer(caller []*mountinfo.Info, root string) *layer {
	var top *mountinfo.Info
	for _, m := range caller {
		if m.Mountpoint == "/" {
			top = m // the last one is on top
		}
	}
	if top == nil || top.FSType != "overlay" {
		return nil
	}
	upper := overlayUpper(top.VFSOptions)
	if rel, err := filepath.Rel(root, upper); err != nil || upper == "" || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil
	}
	return &layer{dev{top.Major, top.Minor}, upper}
}

// overlayUpper returns the upperdir= option of an overlay's super options
// as the kernel wrote it: a path with an escaped character (',', '\\',
// whitespace) does not unescape, then lies under no data root, and the rule
// that needs it is not applied.
func overlayUpper(opts string) string {
	for _, o := range strings.Split(opts, ",") {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			return v
		}
	}
	return ""
}

// containerRoot returns h's root mount when h is a container's namespace:
// its root directory is a mount under the data root.
func containerRoot(h mountns.Holder) (mountns.Mount, bool) {
	for _, m := range h.Mounts {
		if m.HolderRoot {
			return m, true
		}
	}
	return mountns.Mount{}, false
}

// liveSuperblocks maps every anonymous superblock (major 0: tmpfs, overlay)
// that something live has mounted to a phrase naming one such mount: any
// mount of a container's namespace, read from its whole table (its /dev/shm
// lies outside the data root, so the holders do not show it), the mounts of
// the engine's namespace, and the caller's. A copy of such a filesystem in
// another namespace frees nothing when detached; only a copy of a filesystem
// that none of them has is stale.
func liveSuperblocks(holders []mountns.Holder, procs [][]Process, caller []*mountinfo.Info) (map[dev]string, error) {
	live := map[dev]string{}
	add := func(major, minor int, what string) {
		if d := (dev{major, minor}); major == 0 && live[d] == "" {
			live[d] = what
		}
	}
	for _, h := range holders {
		if _, ok := containerRoot(h); !ok {
			continue
		}
		table, err := namespaceTable(h)
		if err != nil {
			return nil, err
		}
		for _, m := range table {
			add(m.Major, m.Minor, fmt.Sprintf("%s of the live container in mnt:[%d]", m.Mountpoint, h.Inode))
		}
	}
	for i, h := range holders {
		if isEngine(procs[i]) {
			for _, m := range h.Mounts {
				add(m.Major, m.Minor, fmt.Sprintf("%s of the container engine in mnt:[%d]", m.Mountpoint, h.Inode))
			}
		}
	}
	for _, m := range caller {
		add(m.Major, m.Minor, fmt.Sprintf("the caller's mount at %s", m.Mountpoint))
	}
	return live, nil
}

// errMoved says that a pid is no longer in the namespace it was listed in:
// it exited, or its pid went to another process.
var errMoved = errors.New("no longer in the namespace")

// namespaceTable reads the whole mount table of h's namespace through the
// first of its processes still in it. nil, nil means every process has
// exited since the scan: the namespace holds nothing any more. Any other
// failure (a permission error) is an error: it must not read as "unused".
func namespaceTable(h mountns.Holder) ([]*mountinfo.Info, error) {
	for _, pid := range append([]int{h.ViewPID}, h.PIDs...) {
		if pid <= 0 {
			continue
		}
		table, err := pidTable(pid, h.Inode)
		switch {
		case err == nil:
			return table, nil
		case errors.Is(err, errMoved), errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ESRCH):
			continue
		default:
			return nil, errors.Wrapf(err, "mount table of container namespace mnt:[%d] through pid %d", h.Inode, pid)
		}
	}
	return nil, nil
}

// pidTable reads /proc/PID/mountinfo. With ns other than 0 it checks, after
// the open (which binds the file to pid's namespace of that moment), that pid
// is in namespace ns, so that a reused pid cannot substitute another
// namespace's table.
func pidTable(pid int, ns uint64) ([]*mountinfo.Info, error) {
	p := "/proc/" + strconv.Itoa(pid)
	f, err := os.Open(p + "/mountinfo")
	if ns != 0 && errors.Is(err, unix.EINVAL) {
		// The kernel's answer for a process that has left its namespaces:
		// exiting, or a zombie.
		return nil, errMoved
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if ns != 0 {
		var st unix.Stat_t
		if err := unix.Stat(p+"/ns/mnt", &st); err != nil {
			return nil, &os.PathError{Op: "stat", Path: p + "/ns/mnt", Err: err}
		}
		if st.Ino != ns {
			return nil, errMoved
		}
	}
	return mountinfo.GetMountsFromReader(f, nil)
}

// isEngine tells whether a container engine (EngineCommands) is among procs:
// every process of the namespace, not only those named in Holder.Commands,
// since pids wrap and a shim can have a lower one than the engine.
func isEngine(procs []Process) bool {
	for _, p := range procs {
		for _, e := range EngineCommands {
			if p.Command == e {
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
		if c, err := procfs.Comm(pid); err == nil {
			p.Command = c
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
