package daemon

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// ExecRejoin replaces this process with argv (argv[0] looked up in PATH, in
// this process's view) in the namespace d decided on: d.Target when d.Rejoin,
// else this process's own. The pid stays the same, so systemd keeps tracking
// dockerd as the unit's main process, and the fds systemd passed (-H fd://)
// stay open. It returns only on error, and then this process's namespace is
// untouched, so the caller may still exec argv where it is.
//
// The program is opened here, before any namespace is joined, and executed
// from that fd (execveat with AT_EMPTY_PATH): the joined namespace's mount
// table never decides which file runs. The namespace is opened through one
// of the target's shims and the shim checked again (see openTarget). A
// locked OS thread other than the main one (/proc/self names the main
// thread, which the runtime never ends) joins it (unshare(CLONE_FS), setns)
// and calls execveat: the new program inherits the mount namespace of the
// thread that executes it. The working directory is kept when it exists in
// the target namespace ("/" otherwise). If the exec fails the thread is
// never unlocked, so it dies with its goroutine and the namespace with it.
func ExecRejoin(d RejoinDecision, argv, env []string) error {
	if len(argv) == 0 {
		return &InputError{What: "dockerd", Value: "(none)", Reason: "no command to start: give it after --"}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return &InputError{What: "dockerd", Value: argv[0], Err: err}
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	bin, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return &InputError{What: "dockerd", Value: path, Err: err}
	}
	defer unix.Close(bin)
	env = withRejoinMark(env, d)
	if !d.Rejoin {
		return execFD(bin, path, argv, env)
	}
	nsfd, err := openTarget(d)
	if err != nil {
		return err
	}
	defer unix.Close(nsfd)
	cwd, _ := os.Getwd()
	err = mountns.InNamespace(nsfd, func() error {
		if cwd != "" {
			_ = unix.Chdir(cwd)
		}
		return execFD(bin, path, argv, env)
	})
	if err != nil {
		return errors.Wrapf(err, "exec %s in mnt:[%d]", path, d.Target.Inode)
	}
	return nil
}

// openTarget opens d.Target's namespace through one of its shims, and checks
// after the open (which pins the namespace) that it is the one decided on,
// that this process's user namespace owns it, and that the pid is still
// provably a shim of the engine, so a shim that exited and whose pid or
// namespace inode went to someone else is not followed.
func openTarget(d RejoinDecision) (int, error) {
	t := d.Target
	if d.proof == nil {
		return -1, errors.New("the decision to rejoin was not made by DecideRejoin: not joining")
	}
	for _, pid := range t.Shims {
		fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		ok := unix.Fstat(fd, &st) == nil && st.Ino == t.Inode && isShimOf(pid, d.ContainerdNamespace) && d.proof.check(pid) == ""
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
	return -1, errors.Errorf("mount namespace mnt:[%d] to rejoin: none of its shims (pids %s) is there any more", t.Inode, pidList(t.Shims))
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

// noExecveat makes execFD behave as on a kernel without execveat (< 3.19);
// for tests.
var noExecveat bool

// execFD executes the file bin refers to (opened as path) with argv and env
// from the calling thread, through execveat(bin, "", AT_EMPTY_PATH), so that
// what runs is the file opened, whatever the thread's mount namespace has at
// path now. It returns only on error. Kernels without execveat (< 3.19)
// get execve(path) after a check that path, looked up in the thread's view,
// is still the same file (device and inode) as bin.
func execFD(bin int, path string, argv, env []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	restoreFileLimit()
	empty := []byte{0}
	inheritable := false
	for !noExecveat {
		_, _, errno := unix.RawSyscall6(unix.SYS_EXECVEAT, uintptr(bin), uintptr(unsafe.Pointer(&empty[0])),
			uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.ENOENT && !inheritable:
			// A script (a wrapper in ExecStart=): the kernel hands its
			// interpreter /dev/fd/BIN to read, which a close-on-exec fd
			// would no longer be, so execveat refuses with ENOENT. Let the
			// interpreter inherit the fd and try once more; the script then
			// keeps that one O_PATH fd open.
			if _, err := unix.FcntlInt(uintptr(bin), unix.F_SETFD, 0); err != nil {
				return errno
			}
			inheritable = true
			continue
		case errno == unix.ENOSYS:
		default:
			return errno
		}
		break
	}
	same, err := sameFile(bin, path)
	if err != nil {
		return err
	}
	if !same {
		return errors.Errorf("%s is not the file opened before joining the namespace (this kernel has no execveat): not executing it", path)
	}
	return syscall.Exec(path, argv, env)
}

// sameFile tells whether path, looked up now (symlinks followed, as the
// open of fd did), is the file fd refers to.
func sameFile(fd int, path string) (bool, error) {
	var a, b unix.Stat_t
	if err := unix.Fstat(fd, &a); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &b); err != nil {
		return false, err
	}
	return a.Dev == b.Dev && a.Ino == b.Ino, nil
}

// restoreFileLimit gives the process back the soft RLIMIT_NOFILE it was
// started with. The Go runtime raises it at start-up and lowers it again
// only in syscall.Exec and in the children it starts; execveat has no such
// wrapper, and without this dockerd, and through it containerd and every
// container, would inherit the raised limit. A syscall.Exec of a path that
// cannot exist ("": ENOENT) runs exactly that restoration.
func restoreFileLimit() {
	_ = syscall.Exec("", nil, nil)
}

// withRejoinMark returns env with RejoinEnv set for decision d (an earlier
// value, from a launcher that started this one, is replaced).
func withRejoinMark(env []string, d RejoinDecision) []string {
	mark := RejoinEnv + "=own namespace"
	if d.Rejoin && d.Target != nil {
		mark = RejoinEnv + "=joined mnt:[" + strconv.FormatUint(d.Target.Inode, 10) + "]"
	}
	out := make([]string, 0, len(env)+1)
	for _, e := range env {
		if !strings.HasPrefix(e, RejoinEnv+"=") {
			out = append(out, e)
		}
	}
	return append(out, mark)
}
