package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
)

// runEnv makes the test binary run the command line in it (JSON) and exit
// with its status, for tests that run nsdetach as another user.
const runEnv = "NSDETACH_TEST_RUN"

func TestMain(m *testing.M) {
	if args := os.Getenv(runEnv); args != "" {
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			fmt.Fprintln(os.Stderr, "bad", runEnv, err)
			os.Exit(3)
		}
		os.Exit(run(argv, os.Stdout, os.Stderr))
	}
	nstest.Main(m)
}

func TestCommands(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name     string
		args     func(root, target, plain string) []string
		held     bool // does the holder still hold target afterwards?
		wantCode int
		wantOut  string
	}{
		{"holders of a held mount", func(r, tg, p string) []string { return []string{"holders", tg} }, true, exitFound, "exe"},
		{"holders of a plain dir", func(r, tg, p string) []string { return []string{"holders", p} }, true, exitOK, "no other mount namespace holds"},
		{"holders without a path", func(r, tg, p string) []string { return []string{"holders"} }, true, exitUsage, ""},
		{"holders of a relative path", func(r, tg, p string) []string { return []string{"holders", "x/y"} }, true, exitUsage, ""},
		{"detach without --root", func(r, tg, p string) []string { return []string{"detach", tg} }, true, exitUsage, ""},
		{"detach outside the root", func(r, tg, p string) []string { return []string{"detach", tg, "--root", p} }, true, exitUsage, ""},
		{"detach with root /", func(r, tg, p string) []string { return []string{"detach", tg, "--root", "/"} }, true, exitUsage, ""},
		{"detach dry run", func(r, tg, p string) []string { return []string{"detach", tg, "--root", r, "--dry-run"} }, true, exitFound, "would-detach"},
		{"detach", func(r, tg, p string) []string { return []string{"detach", tg, "--root", r} }, false, exitOK, "detached " + "/"},
		{"detach the whole root", func(r, tg, p string) []string { return []string{"detach", "--root", r} }, false, exitOK, "in 1 namespaces (1 stale, 0 pinned); detached 1; remaining 0; failed 0"},
		{"unknown command", func(r, tg, p string) []string { return []string{"bogus"} }, true, exitUsage, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			root := filepath.Join(dir, "docker")
			target := filepath.Join(root, "containers", "c1", "shm")
			plain := filepath.Join(dir, "plain")
			for _, d := range []string{target, plain} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{target}})
			var out, errOut bytes.Buffer
			code := run(c.args(root, target, plain), &out, &errOut)
			if code != c.wantCode {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, c.wantCode, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), c.wantOut) {
				t.Errorf("stdout %q does not contain %q", out.String(), c.wantOut)
			}
			if c.wantCode == exitUsage && errOut.Len() == 0 {
				t.Error("a usage error printed nothing on stderr")
			}
			if got := nstest.IsMountedIn(h.PID, target); got != c.held {
				t.Errorf("holder has the mount: %v, want %v", got, c.held)
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	root := filepath.Join(dir, "docker")
	target := filepath.Join(root, "shm")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{target}})

	var out bytes.Buffer
	if code := run([]string{"holders", "--json", target}, &out, &out); code != exitFound {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var holders struct {
		Path    string           `json:"path"`
		Holders []mountns.Holder `json:"holders"`
	}
	if err := json.Unmarshal(out.Bytes(), &holders); err != nil {
		t.Fatalf("holders --json is not one JSON document: %v\n%s", err, out.String())
	}
	if len(holders.Holders) != 1 || holders.Holders[0].Inode != h.Namespace {
		t.Errorf("holders = %+v", holders)
	}

	out.Reset()
	if code := run([]string{"detach", "--json", target, "--root", root}, &out, &out); code != exitOK {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	var rep mountns.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("detach --json is not one JSON document: %v\n%s", err, out.String())
	}
	if by, remaining := rep.Count(); by[mountns.Detached] != 1 || remaining != 0 {
		t.Errorf("report %+v", rep)
	}
}
