package oldkernel

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mkdirs creates each directory (with parents) and fails the test otherwise.
func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// mountTmpfs mounts a tmpfs on dir, creating it, and on cleanup unmounts
// it (if still mounted) and checks that it is gone.
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	mkdirs(t, dir)
	if err := unix.Mount("oldkernel-test", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unmount(t, dir) })
}

// bindMount bind-mounts src on dst, creating dst, and undoes it on cleanup.
func bindMount(t *testing.T, src, dst string) {
	t.Helper()
	mkdirs(t, dst)
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s on %s: %v", src, dst, err)
	}
	t.Cleanup(func() { unmount(t, dst) })
}

func unmount(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, 0); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		t.Errorf("unmount %s: %v", dir, err)
	}
	if m, err := mountinfo.Mounted(dir); err == nil && m {
		t.Errorf("%s is still a mount point after cleanup", dir)
	}
}

// startHolder starts a process in a new mount namespace, a copy of ours
// (private, since Go makes "/" private in it), and on cleanup kills it by
// pid, reaps it and checks that it is gone. It returns the pid.
func startHolder(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "pause")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	// Start returns after the child's execve, so the namespace exists.
	if err := cmd.Start(); err != nil {
		t.Fatalf("start holder: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		if err := unix.Kill(pid, unix.SIGKILL); err != nil {
			t.Errorf("kill holder %d: %v", pid, err)
		}
		_ = cmd.Wait()
		if err := unix.Kill(pid, 0); err != unix.ESRCH {
			t.Errorf("holder %d still exists after cleanup: %v", pid, err)
		}
	})
	return pid
}

// foreignMountPoint makes dir a mount point that only another mount
// namespace has, as in the incident: a tmpfs is mounted on it, a holder
// process copies our namespace, and the tmpfs is unmounted in ours.
func foreignMountPoint(t *testing.T, dir string) {
	t.Helper()
	mountTmpfs(t, dir)
	startHolder(t)
	unmount(t, dir)
}

// runUnder runs the test binary as a helper with ops under the emulator and
// returns the helper's result lines. It fails the test if Run fails or
// leaves a listener fd open.
func runUnder(t *testing.T, cfg Config, ops ...string) ([]string, Result) {
	t.Helper()
	var out bytes.Buffer
	cfg.Args = append([]string{"/proc/self/exe"}, ops...)
	cfg.Env = append(os.Environ(), helperEnv+"=1")
	if cfg.Stdout == nil {
		cfg.Stdout = &out
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkNoListener(t)
	var lines []string
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, res
}

// startPause runs the helper's "pause" under Run(ctx, cfg) in the
// background and returns once the helper says it is ready; Run's result
// comes on the channel.
func startPause(ctx context.Context, t *testing.T, cfg Config) <-chan Result {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cfg.Args = []string{"/proc/self/exe", "pause"}
	cfg.Env = append(os.Environ(), helperEnv+"=1")
	cfg.Stdout, cfg.Stderr = w, os.Stderr
	done := make(chan Result, 1)
	go func() {
		defer w.Close()
		res, err := Run(ctx, cfg)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	if line, err := bufio.NewReader(r).ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	return done
}

// checkNoListener fails the test if this process still holds a seccomp
// listener fd.
func checkNoListener(t *testing.T) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.Contains(link, "seccomp") {
			t.Errorf("fd %s (%s) left open", fd.Name(), link)
		}
	}
}
