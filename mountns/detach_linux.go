package mountns

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/paths"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// DetachAll finds every namespace other than the caller's that holds
// mountpoint or mounts below it, and detaches them there. WithRoot is
// required; mountpoint must be under it. The error is nil when no foreign
// copy remains; otherwise it is a *DetachError naming each namespace, its
// processes and what went wrong.
func DetachAll(ctx context.Context, mountpoint string, opts ...Option) (Report, error) {
	cfg := newConfig(opts)
	g, target, err := guardTarget(cfg, mountpoint)
	if err != nil {
		return Report{Target: mountpoint, Root: cfg.root, DryRun: cfg.dryRun}, err
	}
	holders, err := findHolders(ctx, cfg, target)
	if err != nil {
		return Report{Target: mountpoint, Root: cfg.root, DryRun: cfg.dryRun}, err
	}
	return detachHolders(ctx, cfg, g, target, holders)
}

// DetachHolders detaches the mounts of holders (as FindHolders returned them
// for mountpoint) inside their namespaces. Holders whose processes have all
// exited since are reported Gone, which is success: their mounts went with
// them.
func DetachHolders(ctx context.Context, mountpoint string, holders []Holder, opts ...Option) (Report, error) {
	cfg := newConfig(opts)
	g, target, err := guardTarget(cfg, mountpoint)
	if err != nil {
		return Report{Target: mountpoint, Root: cfg.root, DryRun: cfg.dryRun}, err
	}
	return detachHolders(ctx, cfg, g, target, holders)
}

func guardTarget(cfg *config, mountpoint string) (*guard, string, error) {
	if err := checkPath("mount point", mountpoint); err != nil {
		return nil, "", err
	}
	g, err := newGuard(cfg.root)
	if err != nil {
		return nil, "", err
	}
	target, err := g.resolve(mountpoint)
	return g, target, err
}

func detachHolders(ctx context.Context, cfg *config, g *guard, target string, holders []Holder) (Report, error) {
	rep := Report{Target: target, Root: cfg.root, DryRun: cfg.dryRun, Namespaces: make([]NamespaceReport, len(holders))}
	callerNS, err := procfs.MountNamespace(cfg.callerPID)
	if err != nil {
		return rep, errors.Wrapf(err, "mount namespace of caller pid %d", cfg.callerPID)
	}
	var pool errgroup.Group
	pool.SetLimit(cfg.maxWorkers)
	for i, h := range holders {
		if err := ctx.Err(); err != nil {
			rep.Namespaces[i] = NamespaceReport{Namespace: h.Namespace, ViewPID: h.ViewPID, Root: h.Root, Commands: h.Commands, Error: "not entered: " + err.Error(), err: err}
			continue
		}
		i, h := i, h
		pool.Go(func() error {
			rep.Namespaces[i] = detachNamespace(cfg, g, callerNS, h)
			return nil // each namespace's failure is in its report
		})
	}
	_ = pool.Wait()
	if !rep.Clean() {
		return rep, &DetachError{Report: rep}
	}
	return rep, nil
}

// detachNamespace detaches h's eligible mounts on one thread with one setns.
func detachNamespace(cfg *config, g *guard, callerNS uint64, h Holder) NamespaceReport {
	nr := NamespaceReport{Namespace: h.Namespace, ViewPID: h.ViewPID, Root: h.Root, Commands: h.Commands}
	// A namespace whose root is under the data root is a running container:
	// its mounts (rootfs, /proc, volumes) are its own business, never leaks.
	container := h.Root != "" && paths.Within(h.Root, g.real)
	log := cfg.logger.WithFields(logrus.Fields{"namespace": h.Inode, "pids": h.PIDs})
	var targets []int
	for _, m := range h.Mounts {
		r := MountReport{Mount: m}
		switch {
		case m.HolderRoot:
			r.Action, r.Reason, r.err = Refused, "the mount is the holder's root directory: a live process runs on it", ErrLiveContainer
		case container:
			r.Action, r.Reason, r.err = Refused, "the namespace's root ("+h.Root+") is under the allowed root: a live container runs in it", ErrLiveContainer
		case !g.allows(m):
			r.Action, r.Reason = Refused, (&OutsideRootError{Path: m.Mountpoint, Root: g.root}).Error()
		default:
			targets = append(targets, len(nr.Result))
		}
		nr.Result = append(nr.Result, r)
	}
	if len(targets) == 0 {
		logResults(log, nr.Result)
		return nr
	}
	// Deepest first: detaching a parent first would take its children along
	// and leave them unverifiable. Among mounts stacked on one mount point,
	// the later in the table is on top, so it goes first.
	sort.SliceStable(targets, func(a, b int) bool {
		da, db := depth(nr.Result[targets[a]].Mountpoint), depth(nr.Result[targets[b]].Mountpoint)
		if da != db {
			return da > db
		}
		return targets[a] > targets[b]
	})

	nsfd, rootfd, err := openHolder(h)
	if err == errGone {
		nr.Gone = true
		for _, i := range targets {
			nr.Result[i].Action, nr.Result[i].Reason = Gone, "every process of the namespace exited: the namespace and its mounts are gone"
		}
		logResults(log, nr.Result)
		return nr
	}
	if err != nil {
		return failNamespace(log, nr, targets, err)
	}
	defer unix.Close(nsfd)
	if rootfd >= 0 {
		defer unix.Close(rootfd)
	}
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil || st.Ino == callerNS {
		return failNamespace(log, nr, targets, errors.New("refusing to act on the caller's own mount namespace"))
	}

	var reread error
	err = enter(nsfd, func(task int) error {
		root := rootfd
		if root < 0 {
			// No process: after setns the thread's root is the namespace's.
			fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return errors.Wrap(err, "opening the namespace's root")
			}
			defer unix.Close(fd)
			root = fd
		}
		for _, i := range targets {
			if nr.Result[i].Mountpoint == "/" && rootfd >= 0 {
				// Scanned with no process in it, entered through one.
				nr.Result[i].Action, nr.Result[i].Reason = Refused, "a process has joined the namespace since the scan: its root directory is never detached"
				continue
			}
			detachOne(cfg, root, &nr.Result[i])
		}
		after, _, err := cfg.rereadTable(task, idFilter(nr.Result, targets))
		if err != nil {
			// What umount2 detached is gone from the namespace whatever the
			// table says; the rest is unknown, so it counts as remaining.
			for _, i := range targets {
				r := &nr.Result[i]
				r.Remains = r.Action != Detached
			}
			reread = errors.Wrap(err, "re-reading the mount table")
			return nil
		}
		ids := mountIDs(after)
		for _, i := range targets {
			settleResult(&nr.Result[i], ids[nr.Result[i].ID])
		}
		return nil
	})
	if err != nil {
		return failNamespace(log, nr, targets, err)
	}
	if reread != nil {
		nr.err, nr.Error = reread, reread.Error()
		log.WithError(reread).Warn("mountns: cannot verify what remains in namespace")
	}
	logResults(log, nr.Result)
	return nr
}

// settleResult completes a mount's result once the table has been read
// again: a mount that was refused or whose umount2 failed but that is no
// longer there went meanwhile (another cleaner, its last process), which is
// success; a locked mount is blamed only for an EINVAL while it remains.
func settleResult(r *MountReport, remains bool) {
	r.Remains = remains
	switch {
	case remains && r.Action == Failed && errors.Is(r.err, unix.EINVAL):
		r.Reason += " (a mount locked by a user namespace cannot be unmounted from outside it)"
	case !remains && r.Action == Refused:
		r.Action = Gone
	case !remains && r.Action == Failed:
		r.Action, r.Reason = Gone, "gone before it could be detached here ("+r.Reason+"): detached by another cleaner, or its namespace ended"
		r.err = nil
	}
}

// detachOne resolves, verifies and (unless dry) detaches one mount, from
// the thread that has joined its namespace.
func detachOne(cfg *config, root int, r *MountReport) {
	if r.Mountpoint == "/" {
		detachRoot(cfg, root, r)
		return
	}
	parent, name, err := cfg.resolver().resolveMount(root, r.Mount)
	if err != nil {
		r.Action, r.Reason, r.err = Refused, err.Error(), err
		return
	}
	defer unix.Close(parent)
	if cfg.dryRun {
		r.Action = WouldDetach
		return
	}
	// Relative to the verified parent: the path is not looked up again from
	// the root, and UMOUNT_NOFOLLOW covers the last component.
	if err := unix.Fchdir(parent); err != nil {
		r.Action, r.Reason, r.err = Failed, "fchdir to the verified parent: "+err.Error(), err
		return
	}
	if err := cfg.unmount(name, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
		r.Action, r.Reason = Failed, "umount2: "+err.Error()
		r.err = errors.Wrapf(err, "umount2 %s", r.Mountpoint)
		return
	}
	r.Action = Detached
}

// detachRoot detaches the root mount of a namespace that no process is in,
// the only kind whose "/" is ever a target (Mount.HolderRoot); root is that
// namespace's root directory, opened after setns. Without it, a stopped
// container's namespace that something still pins keeps the layer busy.
func detachRoot(cfg *config, root int, r *MountReport) {
	id, major, minor, err := cfg.resolver().mountIDOf(root)
	switch {
	case err != nil:
		r.Action, r.Reason, r.err = Refused, "cannot read the mount id of the namespace's root: "+err.Error(), err
		return
	case id != r.ID || int(major) != r.Major || int(minor) != r.Minor:
		r.Action, r.Reason, r.err = Refused, fmt.Sprintf("the namespace's root is mount %d on %d:%d, not the scanned mount %d", id, major, minor, r.ID), unix.ESTALE
		return
	case cfg.dryRun:
		r.Action = WouldDetach
		return
	}
	if err := unix.Fchdir(root); err != nil {
		r.Action, r.Reason, r.err = Failed, "fchdir to the namespace's root: "+err.Error(), err
		return
	}
	if err := unix.Unmount("/", unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
		r.Action, r.Reason, r.err = Failed, "umount2 /: "+err.Error(), errors.Wrap(err, "umount2 /")
		return
	}
	r.Action = Detached
}

func failNamespace(log logrus.FieldLogger, nr NamespaceReport, targets []int, err error) NamespaceReport {
	nr.err, nr.Error = err, err.Error()
	for _, i := range targets {
		nr.Result[i].Action, nr.Result[i].Reason, nr.Result[i].Remains = Failed, err.Error(), true
	}
	log.WithError(err).Warn("mountns: cannot detach in namespace")
	return nr
}

func logResults(log logrus.FieldLogger, results []MountReport) {
	for _, r := range results {
		l := log.WithFields(logrus.Fields{"mountpoint": r.Mountpoint, "mount-id": r.ID, "action": r.Action})
		if r.Reason != "" {
			l = l.WithField("reason", r.Reason)
		}
		switch r.Action {
		case Detached, WouldDetach, Gone:
			l.Info("mountns: foreign mount")
		default:
			l.Warn("mountns: foreign mount")
		}
	}
}

func depth(p string) int { return strings.Count(p, "/") }

// idFilter keeps the mountinfo lines of the targets' mount ids (field 1),
// so that the re-read after detaching parses a handful of lines, not the
// whole table.
func idFilter(results []MountReport, targets []int) lineFilter {
	ids := make(map[int]bool, len(targets))
	for _, i := range targets {
		ids[results[i].ID] = true
	}
	return func(line []byte) bool {
		id := 0
		for _, c := range line {
			if c < '0' || c > '9' {
				return c == ' ' && ids[id]
			}
			id = id*10 + int(c-'0')
		}
		return false
	}
}

// openHolder opens the holder's namespace and root directory before any
// setns. The view process is tried first (its root is the one the mount
// points are relative to), then the others. The namespace fd is opened before
// the pid is checked against the scanned namespace, so a reused pid cannot
// redirect it. With no process left, the nsfs walk finds a namespace that is
// still pinned (rootfd is then -1). errGone means that every process exited
// and no walk finds the namespace; a process that could not be opened for
// another reason (no permission) is an error unless another one or the walk
// gives the namespace.
func openHolder(h Holder) (nsfd, rootfd int, err error) {
	pids := append([]int{}, h.PIDs...)
	if h.ViewPID > 0 {
		pids = append([]int{h.ViewPID}, pids...)
	}
	var firstErr error
	for _, pid := range pids {
		ns, root, err := openPID(h, pid)
		if err == nil {
			return ns, root, nil
		}
		if err = settle(pid, err); !isGone(err) && firstErr == nil {
			firstErr = errors.Wrapf(err, "opening the namespace of pid %d", pid)
		}
	}
	ns, err := openWalkedNamespace(h.Inode, h.ID)
	switch {
	case err == nil:
		return ns, -1, nil
	case firstErr != nil:
		return -1, -1, firstErr
	case isGone(err) || !HasNamespaceWalk():
		return -1, -1, errGone
	}
	return -1, -1, errors.Wrapf(err, "finding namespace mnt:[%d] with NS_MNT_GET_NEXT", h.Inode)
}

// openPID opens pid's root directory and mount namespace, checking that the
// namespace is h's; errGone when pid is no longer in it.
func openPID(h Holder, pid int) (nsfd, rootfd int, err error) {
	p := "/proc/" + strconv.Itoa(pid)
	root, err := unix.Open(p+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, &os.PathError{Op: "open", Path: p + "/root", Err: err}
	}
	ns, err := unix.Open(p+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(root)
		return -1, -1, &os.PathError{Op: "open", Path: p + "/ns/mnt", Err: err}
	}
	fail := func(err error) (int, int, error) {
		unix.Close(ns)
		unix.Close(root)
		return -1, -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(ns, &st); err != nil {
		return fail(&os.PathError{Op: "fstat", Path: p + "/ns/mnt", Err: err})
	}
	if st.Ino != h.Inode {
		return fail(errGone)
	}
	ino, err := procfs.MountNamespace(pid)
	if err != nil {
		return fail(err)
	}
	if ino != h.Inode {
		return fail(errGone)
	}
	if h.ID != 0 {
		// The inode may have gone to a new namespace since the scan.
		id, err := namespaceID(ns)
		if err != nil {
			return fail(&os.PathError{Op: "ioctl NS_GET_MNTNS_ID", Path: p + "/ns/mnt", Err: err})
		}
		if id != h.ID {
			return fail(errGone)
		}
	}
	return ns, root, nil
}

// unmount is umount2(2), or what a test put in its place (umount2).
func (c *config) unmount(name string, flags int) error {
	if c.umount2 != nil {
		return c.umount2(name, flags)
	}
	return unix.Unmount(name, flags)
}

// rereadTable reads the mount table of the namespace that task has joined
// again after a detach pass, or fails as a test asked (rereadErr).
func (c *config) rereadTable(task int, keep lineFilter) ([]*mountinfo.Info, []byte, error) {
	if c.rereadErr != nil {
		return nil, nil, c.rereadErr
	}
	return readOwnTable(task, keep)
}
