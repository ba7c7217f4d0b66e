package nstest

import (
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// InNamespace runs fn on an OS thread that has joined pid's mount
// namespace; paths in fn are as pid's namespace has them from its root. The
// thread is locked and never unlocked, so it ends with fn's goroutine and
// no other goroutine runs in that namespace.
func InNamespace(pid int, fn func() error) error {
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	if err != nil {
		return err
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is parked rather than ended when its
			// goroutine exits, and /proc/self names it: go elsewhere.
			errc <- InNamespace(pid, fn)
			runtime.UnlockOSThread()
			return
		}
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- err
			return
		}
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}
