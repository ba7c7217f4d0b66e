package mountns

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// errGone means every process of a namespace exited and no walk finds it:
// the namespace, and every mount in it, is gone.
var errGone = errors.New("namespace is gone")

// table is one namespace's mount table, read through one process's eyes.
type table struct {
	ns Namespace
	// viewPID is the process whose root the mount points are relative to;
	// 0 when the table was read from the namespace's own root (no process).
	viewPID int
	// linkRoot is readlink(/proc/viewPID/root), read only for a chrooted
	// view (no "/" entry), and rootDev/rootIno identify the directory that
	// /proc/viewPID/root opened: the link is a path in the holder's
	// namespace, used only once checkLinkRoot found the same directory there
	// in the caller's view. rootNote says why the root has no place when it
	// has none.
	linkRoot         string
	rootDev, rootIno uint64
	rootNote         string
	mounts           []*mountinfo.Info
	// raw is the whole table when mounts holds only the lines a filter kept.
	raw []byte
	// uniq maps mount id to unique mount id, for a table read with
	// statmount (listedTable); nil otherwise.
	uniq map[int]uint64
}

// unfiltered parses every line of a filtered table: needed when the
// holder's root itself lies below the target, so that every mount it has is
// below the target whatever its name.
func (t *table) unfiltered() error {
	if t.raw == nil {
		return nil
	}
	all, err := mountinfo.GetMountsFromReader(bytes.NewReader(t.raw), nil)
	t.mounts, t.raw = all, nil
	return err
}

// readTable reads ns's mount table once: through its first process that
// can show it, or, when none is left, with statmount by namespace id where
// the kernel has it and statmount is true, else from inside the namespace
// found by the nsfs walk. Both read the table in the view of the
// namespace's root. It returns errGone only when every process exited and
// no walk finds the namespace; a process that could not be read for another
// reason (no permission) is an error unless another process or the walk
// shows the table.
func readTable(ns Namespace, keep lineFilter, statmount bool) (*table, error) {
	var firstErr error
	for _, pid := range ns.PIDs {
		t, err := readPIDTable(ns, pid, keep)
		if err == nil {
			return t, nil
		}
		if !isGone(err) && firstErr == nil {
			firstErr = err
		}
	}
	if statmount && ns.ID != 0 && HasListmount() {
		// No setns, no thread, no text: the namespace's mounts by its id.
		t, _, _, err := listedTable(ns, nil, make([]byte, 4096))
		if err == nil || firstErr == nil {
			return t, err
		}
		return nil, firstErr
	}
	fd, err := openWalkedNamespace(ns.Inode, ns.ID)
	if err != nil {
		switch {
		case firstErr != nil:
			return nil, firstErr
		case isGone(err) || !HasNamespaceWalk():
			return nil, errGone
		}
		return nil, errors.Wrapf(err, "finding namespace mnt:[%d] with NS_MNT_GET_NEXT", ns.Inode)
	}
	defer unix.Close(fd)
	t := &table{ns: ns}
	err = enter(fd, func(task int) error {
		t.mounts, t.raw, err = readOwnTable(task, keep)
		return err
	})
	return t, err
}

// readPIDTable reads pid's mountinfo, checking after the open (which binds
// the file to the namespace) that pid is still in ns, so a reused pid cannot
// substitute another namespace's table. A pid that exited or moved to
// another namespace gives errGone; any other failure is returned, naming
// the pid.
func readPIDTable(ns Namespace, pid int, keep lineFilter) (*table, error) {
	p := "/proc/" + strconv.Itoa(pid)
	t, err := readPIDTableAt(ns, pid, p, keep)
	if err = settle(pid, err); err != nil && !isGone(err) {
		return nil, errors.Wrapf(err, "mount table of pid %d", pid)
	}
	return t, err
}

func readPIDTableAt(ns Namespace, pid int, p string, keep lineFilter) (*table, error) {
	fd, err := unix.Open(p+"/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p + "/mountinfo", Err: err}
	}
	defer unix.Close(fd)
	ino, err := procfs.MountNamespace(pid)
	if err != nil {
		return nil, err
	}
	if ino != ns.Inode {
		return nil, errGone // the pid left the namespace, or is another process now
	}
	infos, raw, err := readMountinfo(fd, keep)
	if err != nil {
		return nil, &os.PathError{Op: "read", Path: p + "/mountinfo", Err: err}
	}
	t := &table{ns: ns, viewPID: pid, mounts: infos, raw: raw}
	if !hasRootEntry(infos) {
		// Only a chrooted view lacks "/", and only then is the link needed.
		root, err := unix.Open(p+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p + "/root", Err: err}
		}
		defer unix.Close(root)
		var st unix.Stat_t
		if err := unix.Fstat(root, &st); err != nil {
			return nil, &os.PathError{Op: "fstat", Path: p + "/root", Err: err}
		}
		t.rootDev, t.rootIno = st.Dev, st.Ino
		if t.linkRoot, err = os.Readlink(p + "/root"); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkLinkRoot keeps t.linkRoot only when that path, looked up in the
// caller's view (callerRoot is an fd of the caller's root) without
// following symlinks, is the directory that the holder's root is (same
// device and inode). readlink(/proc/PID/root) names the holder's root in
// the holder's own namespace: a holder chrooted below a mount that only its
// namespace has gets a path that is another directory, or nothing, here.
// Mount ids cannot be compared: every namespace has its own copy of each
// mount, with an id of its own.
func (t *table) checkLinkRoot(r resolver, callerRoot int) {
	link := t.linkRoot
	t.linkRoot = ""
	if !path.IsAbs(link) || strings.HasSuffix(link, "(deleted)") {
		t.rootNote = fmt.Sprintf("the root of pid %d is %q, not a path", t.viewPID, link)
		return
	}
	link = path.Clean(link)
	rel := strings.TrimPrefix(link, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := r.openBeneath(callerRoot, rel, unix.O_DIRECTORY)
	if err != nil {
		t.rootNote = fmt.Sprintf("pid %d is chrooted to %s in its own namespace, which the caller cannot reach (%v): its root has no known place here", t.viewPID, link, err)
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != t.rootDev || st.Ino != t.rootIno {
		t.rootNote = fmt.Sprintf("pid %d is chrooted to %s in its own namespace, which is another directory in the caller's view: its root has no known place here", t.viewPID, link)
		return
	}
	t.linkRoot = link
}

// readOwnTable reads the mount table of the calling thread's namespace; task
// is an fd of /proc/self/task opened before the thread left its namespace.
func readOwnTable(task int, keep lineFilter) ([]*mountinfo.Info, []byte, error) {
	fd, err := unix.Openat(task, strconv.Itoa(unix.Gettid())+"/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, &os.PathError{Op: "open", Path: "/proc/thread-self/mountinfo", Err: err}
	}
	defer unix.Close(fd)
	infos, raw, err := readMountinfo(fd, keep)
	if err != nil {
		return nil, nil, &os.PathError{Op: "read", Path: "/proc/thread-self/mountinfo", Err: err}
	}
	return infos, raw, nil
}

// readBufs are the buffers whole mount tables are read into: one large
// read(2) takes a whole table, where io.ReadAll's small first reads make the
// kernel render the table again for each (/proc/PID/mountinfo has no size).
var readBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// readMountinfo reads the whole mountinfo file fd with as few reads as the
// kernel allows and parses the lines that keep accepts (see parseTable).
func readMountinfo(fd int, keep lineFilter) ([]*mountinfo.Info, []byte, error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf, n := *bp, 0
	for {
		if n == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
			*bp = buf
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	if keep == nil {
		return parseTable(buf[:n], nil) // the parse copies what it keeps
	}
	// The pooled buffer is reused: the text kept for unfiltered is copied.
	return parseTable(append([]byte(nil), buf[:n]...), keep)
}

// enter runs fn on a fresh OS thread that has joined the mount namespace nsfd.
// The thread is locked and never unlocked, so it exits with its goroutine and
// the foreign namespace never reaches another goroutine. fn gets an fd of
// /proc/self/task opened before setns.
func enter(nsfd int, fn func(task int) error) error {
	_, _ = fdinfoDir() // opened here, in the caller's namespace; mountIDOf reports its error
	task, err := unix.Open("/proc/self/task", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: "/proc/self/task", Err: err}
	}
	errc := make(chan error, 1)
	go func() {
		defer unix.Close(task)
		runtime.LockOSThread() // never unlocked: see above
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never ended by the runtime, only parked,
			// and /proc/self names it: joining a namespace here would move
			// the whole process's /proc/self view. While this goroutine holds
			// the main thread, enter again: that goroutine lands elsewhere.
			errc <- enter(nsfd, fn)
			runtime.UnlockOSThread()
			return
		}
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- errors.Wrap(err, "unshare(CLONE_FS)")
			return
		}
		if err := unix.Setns(nsfd, unix.CLONE_NEWNS); err != nil {
			errc <- errors.Wrap(err, "setns(CLONE_NEWNS)")
			return
		}
		errc <- fn(task)
	}()
	return <-errc
}

func hasRootEntry(t []*mountinfo.Info) bool {
	for _, m := range t {
		if m.Mountpoint == "/" {
			return true
		}
	}
	return false
}

// lineFilter picks the mountinfo lines worth parsing; nil keeps all.
type lineFilter func(line []byte) bool

// filterFor keeps the lines that can matter for target: the holder's root
// entry ("/", to place its root), overlays (matched by upperdir), and lines
// that name target's last component, which every mount at or below target
// names whatever the holder's root (a cheap byte test before the parse,
// which is most of a scan's time).
func filterFor(target string) lineFilter {
	base := path.Base(target)
	if base == "/" || base == "." {
		return nil
	}
	name := []byte(procfs.EscapeMountinfo(base))
	return func(line []byte) bool {
		return bytes.Contains(line, name) ||
			bytes.Contains(line, []byte(" - overlay ")) || isRootLine(line)
	}
}

// isRootLine tells whether field 5, the mount point, is "/".
func isRootLine(line []byte) bool {
	f := 0
	for i := 0; i < len(line); i++ {
		if line[i] == ' ' {
			f++
			if f == 4 {
				return i+2 < len(line) && line[i+1] == '/' && line[i+2] == ' '
			}
		}
	}
	return false
}

// parseTable parses the lines of data that keep accepts; with a filter it
// also returns the whole text, for table.unfiltered.
func parseTable(data []byte, keep lineFilter) ([]*mountinfo.Info, []byte, error) {
	if keep == nil {
		infos, err := mountinfo.GetMountsFromReader(bytes.NewReader(data), nil)
		return infos, nil, err
	}
	raw := data
	var kept []byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		if keep(line) {
			kept = append(kept, line...)
		}
	}
	if len(kept) == 0 {
		return nil, raw, nil
	}
	infos, err := mountinfo.GetMountsFromReader(bytes.NewReader(kept), nil)
	return infos, raw, err
}
