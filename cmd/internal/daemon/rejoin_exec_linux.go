package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ExecRejoin replaces this process with argv (argv[0] looked up in PATH, in
// this process's view) in the namespace d decided on: d.Target when d.Rejoin,
// else this process's own. The pid stays the same, so systemd keeps tracking
// dockerd as the unit's main process, and the fds systemd passed (-H fd://)
// stay open. It returns only on error, and then this process's namespace is
// untouched, so the caller may still exec argv where it is.
//
// The namespace is joined by one locked OS thread (unshare(CLONE_FS), setns),
// and that thread calls execve: the new program inherits the mount namespace
// of the thread that executes it, not of the process's main thread. The
// working directory is kept when it exists in the target namespace (it is "/"
// otherwise). If execve fails the thread is never unlocked, so it dies with
// its goroutine and the namespace goes with it.
func ExecRejoin(d RejoinDecision, argv, env []string) error {
	if len(argv) == 0 {
		return &InputError{What: "dockerd", Value: "(none)", Reason: "no command to start: give it after --"}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return &InputError{What: "dockerd", Value: argv[0], Reason: err.Error()}
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	if !d.Rejoin {
		return syscall.Exec(path, argv, env)
	}
	nsfd, err := openTarget(d)
	if err != nil {
		return err
	}
	defer unix.Close(nsfd)
	cwd, _ := os.Getwd()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Setns(nsfd, unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("setns into mnt:[%d]: %w", d.Target.Inode, err)
			return
		}
		if cwd != "" {
			_ = unix.Chdir(cwd)
		}
		err := syscall.Exec(path, argv, env)
		errc <- fmt.Errorf("exec %s in mnt:[%d]: %w", path, d.Target.Inode, err)
	}()
	return <-errc
}

// openTarget opens d.Target's namespace through one of its shims, and checks
// after the open (which pins the namespace) that it is the one decided on,
// that this process's user namespace owns it, and that the pid is still a
// shim of the engine, so a shim that exited and whose pid or namespace inode
// went to someone else is not followed.
func openTarget(d RejoinDecision) (int, error) {
	t := d.Target
	for _, pid := range append(append([]int(nil), t.Shims...), t.PIDs...) {
		fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		ok := unix.Fstat(fd, &st) == nil && st.Ino == t.Inode && isShimOf(pid, d.ContainerdNamespace)
		if ok {
			owner, err := mountNamespaceOwner(fd)
			ok = err == nil && owner == d.UserNamespace
		}
		if ok && t.ID != 0 {
			id, err := mountNamespaceID(fd)
			ok = err == nil && id == t.ID
		}
		if ok {
			return fd, nil
		}
		unix.Close(fd)
	}
	return -1, fmt.Errorf("mount namespace mnt:[%d] to rejoin: none of its shims (pids %s) is there any more", t.Inode, pidList(t.Shims))
}

// mountNamespaceID is NS_GET_MNTNS_ID (_IOR(0xb7, 0x5, __u64)): the 64-bit id
// of the mount namespace fd refers to, never reused.
func mountNamespaceID(fd int) (uint64, error) {
	var id uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0x8008b705, uintptr(unsafe.Pointer(&id)))
	if errno != 0 {
		return 0, errno
	}
	return id, nil
}

// mountNamespaceOwner returns the inode of the user namespace that owns the
// mount namespace fd refers to (NS_GET_USERNS, _IO(0xb7, 0x1)).
func mountNamespaceOwner(fd int) (uint64, error) {
	ufd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), 0xb701, 0)
	if errno != 0 {
		return 0, errno
	}
	defer unix.Close(int(ufd))
	var st unix.Stat_t
	if err := unix.Fstat(int(ufd), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// namespaceOwner returns the owner (user namespace inode) of pid's mount
// namespace.
func namespaceOwner(pid int) (uint64, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	return mountNamespaceOwner(fd)
}

// userNamespace returns the inode of this process's user namespace.
func userNamespace() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
