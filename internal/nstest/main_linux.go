package nstest

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

const (
	isolatedEnv = "NSDETACH_NSTEST_ISOLATED"
	helperEnv   = "NSDETACH_NSTEST_HELPER"
)

// Main is the TestMain of packages that use this one. As root it re-executes
// the test binary once in a new mount namespace whose mounts are all private
// (Go's exec makes "/" private after unshare), so that no test mount can reach
// the host's namespace and every mount a test forgets dies with the process.
// It also serves the holder processes started by StartHolder.
func Main(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	if os.Geteuid() != 0 || os.Getenv(isolatedEnv) != "" {
		code := m.Run()
		for i := len(atExit) - 1; i >= 0; i-- {
			atExit[i]()
		}
		os.Exit(code)
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), isolatedEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "nstest: re-executing the tests in a private mount namespace:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// atExit holds the functions AtExit registered, run in reverse order.
var atExit []func()

// AtExit registers fn to run once every test has run, before the binary
// exits: for fixtures shared by a whole binary (the benchmarks'), which no
// test's Cleanup can end. Register it from the test goroutines only.
func AtExit(fn func()) { atExit = append(atExit, fn) }

// RequireRoot skips t unless it runs as root in the isolated namespace.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mount namespaces, overlay and tmpfs mounts are made for real")
	}
	if os.Getenv(isolatedEnv) == "" {
		t.Skip("the package's TestMain must be nstest.Main, which isolates the tests in their own mount namespace")
	}
}
