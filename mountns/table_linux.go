package mountns

import (
	"os"
	"runtime"
	"strconv"

	"github.com/moby/sys/mountinfo"
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
	// linkRoot is readlink(/proc/viewPID/root).
	linkRoot string
	mounts   []*mountinfo.Info
}

// readTable reads ns's mount table once: through its first live process, or,
// when none is left, from inside the namespace found by the nsfs walk.
func readTable(ns Namespace) (*table, error) {
	for _, pid := range ns.PIDs {
		t, err := readPIDTable(ns, pid)
		if err == nil {
			return t, nil
		}
	}
	fd, err := openWalkedNamespace(ns.Inode)
	if err != nil {
		return nil, errGone
	}
	defer unix.Close(fd)
	t := &table{ns: ns}
	err = enter(fd, func(task int) error {
		t.mounts, err = readOwnTable(task)
		return err
	})
	return t, err
}

// readPIDTable reads pid's mountinfo, checking after the open (which binds
// the file to the namespace) that pid is still in ns, so a reused pid cannot
// substitute another namespace's table.
func readPIDTable(ns Namespace, pid int) (*table, error) {
	p := "/proc/" + strconv.Itoa(pid)
	f, err := os.Open(p + "/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if ino, err := namespaceOf(pid); err != nil || ino != ns.Inode {
		return nil, errGone
	}
	infos, err := mountinfo.GetMountsFromReader(f, nil)
	if err != nil {
		return nil, err
	}
	link, _ := os.Readlink(p + "/root")
	return &table{ns: ns, viewPID: pid, linkRoot: link, mounts: infos}, nil
}

// readOwnTable reads the mount table of the calling thread's namespace; task
// is an fd of /proc/self/task opened before the thread left its namespace.
func readOwnTable(task int) ([]*mountinfo.Info, error) {
	fd, err := unix.Openat(task, strconv.Itoa(unix.Gettid())+"/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/thread-self/mountinfo", Err: err}
	}
	f := os.NewFile(uintptr(fd), "mountinfo")
	defer f.Close()
	return mountinfo.GetMountsFromReader(f, nil)
}

// enter runs fn on a fresh OS thread that has joined the mount namespace nsfd.
// The thread is locked and never unlocked, so it exits with its goroutine and
// the foreign namespace never reaches another goroutine. fn gets an fd of
// /proc/self/task opened before setns.
func enter(nsfd int, fn func(task int) error) error {
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
