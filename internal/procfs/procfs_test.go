//go:build linux

package procfs_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/procfs"
	"golang.org/x/sys/unix"
)

func TestFacts(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/mnt", &st); err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	tests := []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"mount namespace", func() (string, error) { ino, err := procfs.MountNamespace(pid); return itoa(ino), err }, itoa(st.Ino)},
		{"comm", func() (string, error) { return procfs.Comm(pid) }, strings.TrimSuffix(string(comm), "\n")},
		{"pids include this one", func() (string, error) {
			pids, err := procfs.PIDs()
			for _, p := range pids {
				if p == pid {
					return "found", err
				}
			}
			return "missing", err
		}, "found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.got()
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestExitedProcess: a process that has exited and been reaped is ENOENT,
// never an answer.
func TestExitedProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if _, err := procfs.MountNamespace(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("MountNamespace of exited pid %d: %v, want ENOENT", pid, err)
	}
	if _, err := procfs.Comm(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Comm of exited pid %d: %v, want ENOENT", pid, err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestEscapeMountinfo(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/var/lib/docker", "/var/lib/docker"},
		{"/a b", `/a\040b`},
		{"/a\tb\nc", `/a\011b\012c`},
		{`/a\b`, `/a\134b`},
		{"/ünï", "/ünï"},
	} {
		if got := procfs.EscapeMountinfo(tc.path); got != tc.want {
			t.Errorf("EscapeMountinfo(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
