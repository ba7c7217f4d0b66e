package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"golang.org/x/sys/unix"
)

func TestPreflight(t *testing.T) {
	all := uint64(1)<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_SYS_CHROOT | 1<<unix.CAP_SYS_PTRACE
	cases := []struct {
		name    string
		caps    uint64
		capsErr error
		ppid    int
		want    []string // substrings of the error; none: no error
		notWant []string
	}{
		{name: "what the DaemonSet grants", caps: all, ppid: 4242},
		{name: "full root", caps: 1<<41 - 1, ppid: 1},
		{name: "no capabilities", caps: 0, ppid: 4242,
			want:    []string{"CAP_SYS_ADMIN is missing", "CAP_SYS_CHROOT is missing", "CAP_SYS_PTRACE is missing", "--cap-add SYS_PTRACE"},
			notWant: []string{"pid namespace"}},
		{name: "no SYS_PTRACE", caps: all &^ (1 << unix.CAP_SYS_PTRACE), ppid: 4242,
			want: []string{"CAP_SYS_PTRACE is missing"}, notWant: []string{"CAP_SYS_ADMIN", "CAP_SYS_CHROOT"}},
		{name: "own pid namespace", caps: all, ppid: 0,
			want: []string{"not in the node's pid namespace", "hostPID: true"}, notWant: []string{"missing"}},
		{name: "neither", caps: 0, ppid: 0,
			want: []string{"CAP_SYS_ADMIN is missing", "hostPID: true"}},
		{name: "capget fails", capsErr: errors.New("boom"), ppid: 4242,
			want: []string{"cannot read its capabilities: boom"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := processEnv{
				effectiveCaps: func() (uint64, error) { return c.caps, c.capsErr },
				parentPID:     func() int { return c.ppid },
			}
			err := env.preflight()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("preflight: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("preflight passed")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q says %q", err, w)
				}
			}
		})
	}
}

// TestPreflightThisProcess: the test runs as root in the pid namespace of
// its parent (go test), so the real checks pass.
func TestPreflightThisProcess(t *testing.T) {
	nstest.RequireRoot(t)
	if err := thisProcess.preflight(); err != nil {
		t.Fatal(err)
	}
}

const serveChildEnv = "NSDETACH_TEST_SERVE_ARGS"

// TestServeChild is not a test: it is `nsdetach serve` in a child process
// that TestServeNotReady starts without capabilities or in a pid namespace
// of its own.
func TestServeChild(t *testing.T) {
	args := os.Getenv(serveChildEnv)
	if args == "" {
		t.Skip("the child process of TestServeNotReady")
	}
	os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
}

// TestServeNotReady runs serve for real where the DaemonSet could be
// misconfigured: as a process without the capabilities (uid nobody) and as
// pid 1 of a pid namespace of its own (no hostPID). It must say why on
// stderr and answer 503 on /healthz and /metrics, never zeros.
func TestServeNotReady(t *testing.T) {
	nstest.RequireRoot(t)
	root := nstest.Dir(t)
	cases := []struct {
		name string
		attr *syscall.SysProcAttr
		says string
	}{
		{"without capabilities", &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}, "CAP_SYS_ADMIN is missing"},
		{"without host pid", &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}, "not in the node's pid namespace"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestServeChild$")
			cmd.Env = append(os.Environ(), serveChildEnv+"=serve --listen 127.0.0.1:0 --root "+root)
			c.attr.Pdeathsig = syscall.SIGKILL
			cmd.SysProcAttr = c.attr
			stderr := startNotReady(t, cmd, c.says)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitFound {
				t.Errorf("exit %v, want %d", err, exitFound)
			}
			if !strings.Contains(stderr.String(), "not ready") || !strings.Contains(stderr.String(), c.says) {
				t.Errorf("stderr %q: want the start-up error saying %q", stderr.String(), c.says)
			}
		})
	}
}

// startNotReady starts serve (cmd), which must come up not ready: its first
// stdout line names the address, and /healthz and /metrics there answer 503
// with a body that says why, never a gauge. It returns serve's stderr so
// far, and kills serve when the test ends.
func startNotReady(t *testing.T, cmd *exec.Cmd, says string) *strings.Builder {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		_ = cmd.Wait()
		t.Fatalf("serve wrote nothing: %s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	m := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/healthz`).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("stdout %q: want the not-ready address", lines.Text())
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		code, body := get(t, "http://"+m[1]+path)
		if code != 503 || !strings.Contains(body, says) || strings.Contains(body, "nsdetach_leaked_mounts") {
			t.Errorf("GET %s: %d %q, want 503 saying %q and no gauges", path, code, body, says)
		}
	}
	return stderr
}
