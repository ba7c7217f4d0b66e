package oldkernel

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables that switch the test binary into one of its roles.
const (
	// isolatedEnv marks the copy of the test binary running in its own
	// mount namespace.
	isolatedEnv = "OLDKERNEL_TEST_ISOLATED"
	// helperEnv makes the test binary a helper: it runs the operations in
	// its arguments and prints one result line per operation.
	helperEnv = "OLDKERNEL_TEST_HELPER"
)

func TestMain(m *testing.M) {
	Init()
	if os.Getenv(helperEnv) != "" {
		os.Exit(helper(os.Args[1:]))
	}
	if os.Geteuid() == 0 && os.Getenv(isolatedEnv) == "" {
		os.Exit(isolate())
	}
	if os.Geteuid() == 0 {
		// Orphans of the commands under test become our children, so a
		// test can reap, and so verify the end of, every process it made.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			fmt.Fprintln(os.Stderr, "subreaper:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); err != unix.ECHILD {
			fmt.Fprintf(os.Stderr, "FAIL: tests left a child process behind (pid %d, err %v)\n", pid, err)
			code = 1
		}
	}
	os.Exit(code)
}

// isolate runs the tests again in a new mount namespace (Go makes its "/"
// private recursively), so no test mount ever reaches the host's.
func isolate() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), isolatedEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "isolate:", err)
		return 1
	}
	return 0
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: mounts, mount namespaces and seccomp listeners")
	}
}

// helper runs operations "NAME:ARG:ARG..." and prints, for each, "ok" or
// the errno's name. Its exit status is that of an "exit:N" operation, or 0.
func helper(ops []string) int {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, op := range ops {
		f := strings.Split(op, ":")
		var err error
		switch f[0] {
		case "rmdir":
			err = rmdirSyscall(f[1])
		case "unlinkat-dir":
			err = unix.Unlinkat(unix.AT_FDCWD, f[1], unix.AT_REMOVEDIR)
		case "rmdirat":
			err = atDir(f[1], func(fd int) error { return unix.Unlinkat(fd, f[2], unix.AT_REMOVEDIR) })
		case "unlink":
			err = unlinkSyscall(f[1])
		case "unlinkat":
			err = unix.Unlinkat(unix.AT_FDCWD, f[1], 0)
		case "unlinkat-file-at":
			err = atDir(f[1], func(fd int) error { return unix.Unlinkat(fd, f[2], 0) })
		case "chdir":
			err = unix.Chdir(f[1])
		case "loop":
			n, _ := strconv.Atoi(f[1])
			fails, d := mkdirRmdirLoop(n, f[2])
			fmt.Fprintf(out, "%d %d\n", fails, d.Nanoseconds())
			continue
		case "exit":
			n, _ := strconv.Atoi(f[1])
			out.Flush()
			return n
		case "bench":
			n, _ := strconv.Atoi(f[2])
			d, err := benchHelper(f[1], n, f[3])
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintln(out, d.Nanoseconds())
			continue
		case "kill-self":
			out.Flush()
			unix.Kill(os.Getpid(), unix.SIGTERM)
			// The runtime re-raises SIGTERM with its default action; until
			// it lands, wait.
			for {
				unix.Pause()
			}
		case "pause":
			fmt.Fprintln(out, "ready")
			out.Flush()
			for {
				unix.Pause()
			}
		case "orphan":
			// Start a copy that outlives us and runs the remaining
			// operations once we are gone; it inherits stdin and stdout,
			// and a pidfd of ours as fd 3.
			pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			cmd := exec.Command("/proc/self/exe", append([]string{"after-parent"}, ops[1:]...)...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(pidfd), "pidfd")}
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			fmt.Fprintf(out, "%d\n", cmd.Process.Pid)
			return 7
		case "after-parent":
			err = waitParentThenStdin()
		case "syscall":
			err = surfaceProbe(f[1])
		default:
			fmt.Fprintf(os.Stderr, "helper: unknown operation %q\n", op)
			return 2
		}
		fmt.Fprintln(out, errName(err))
	}
	return 0
}

func atDir(dir string, fn func(fd int) error) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return fn(fd)
}

func mkdirRmdirLoop(n int, dir string) (fails int, d time.Duration) {
	start := time.Now()
	for i := 0; i < n; i++ {
		if err := unix.Mkdir(dir, 0o755); err != nil {
			fails++
			continue
		}
		if err := rmdirSyscall(dir); err != nil {
			fails++
		}
	}
	return fails, time.Since(start)
}

// waitParentThenStdin returns once the process that started us (the
// pidfd on fd 3) has exited and our stdin has reached EOF.
func waitParentThenStdin() error {
	fds := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			break
		}
	}
	unix.Close(3)
	buf := make([]byte, 1)
	for {
		if n, err := os.Stdin.Read(buf); n == 0 || err != nil {
			return nil
		}
	}
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if errno, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
