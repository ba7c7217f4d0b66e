package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
)

// TestUnprivileged: run without the privileges to look into other
// processes' namespaces, holders, scan and detach must say so and exit 2,
// never answer "nothing held" or "0 leaks"; and nothing is detached.
func TestUnprivileged(t *testing.T) {
	nstest.RequireRoot(t)
	in := newIncident(t)
	// uid 65534 must reach the data root, so that what stops it is the
	// namespaces, not the path.
	if err := os.Chmod(filepath.Dir(in.root), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
	}{
		{"holders", []string{"holders", in.dead.Merged}},
		{"holders --json", []string{"holders", "--json", in.dead.Merged}},
		{"scan", []string{"scan", "--root", in.root}},
		{"detach --root", []string{"detach", "--root", in.root}},
		{"detach PATH", []string{"detach", in.dead.Merged, "--root", in.root}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args, err := json.Marshal(c.args)
			if err != nil {
				t.Fatal(err)
			}
			cmd := nstest.CommandAsNobody(t, runEnv+"="+string(args))
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err = cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitUsage {
				t.Errorf("exit %v, want %d\nstdout:\n%s\nstderr:\n%s", err, exitUsage, out.String(), errOut.String())
			}
			lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
			last := lines[len(lines)-1]
			for _, w := range []string{"pid ", "permission denied", needsRoot} {
				if !strings.Contains(last, w) {
					t.Errorf("stderr's last line lacks %q:\n%s", w, errOut.String())
				}
			}
			if out.Len() != 0 {
				t.Errorf("an answer on stdout: %s", out.String())
			}
			if !nstest.IsMountedIn(in.old.PID, in.dead.Merged) {
				t.Error("the leaked layer was detached")
			}
		})
	}
}

// TestRootSymlinkToSlash: a --root that is a symlink to / passes a text
// check; every command must resolve it and refuse it as bad input.
func TestRootSymlinkToSlash(t *testing.T) {
	nstest.RequireRoot(t)
	in := newIncident(t)
	slash := filepath.Join(filepath.Dir(in.root), "slash")
	if err := os.Symlink("/", slash); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"scan", "--root", slash},
		{"detach", "--root", slash},
		{"detach", in.dead.Merged, "--root", slash},
		{"detach", slash + in.dead.Merged, "--root", slash},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "/") {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitUsage, out.String(), errOut.String())
			}
			if !nstest.IsMountedIn(in.old.PID, in.dead.Merged) {
				t.Fatal("the leaked layer was detached")
			}
		})
	}
}

// TestUnprivilegedServe: without privileges serve cannot read every
// namespace, so on a node where a leak exists it must not serve an empty
// scan: it stays up, says why on stderr, and answers 503 on /healthz and
// /metrics with no gauge exported, until it is stopped.
func TestUnprivilegedServe(t *testing.T) {
	nstest.RequireRoot(t)
	in := newIncident(t)
	if err := os.Chmod(filepath.Dir(in.root), 0o755); err != nil {
		t.Fatal(err)
	}
	args, err := json.Marshal([]string{"serve", "--listen", "127.0.0.1:0", "--root", in.root})
	if err != nil {
		t.Fatal(err)
	}
	startNotReady(t, nstest.CommandAsNobody(t, runEnv+"="+string(args)), "CAP_SYS_PTRACE is missing")
}
