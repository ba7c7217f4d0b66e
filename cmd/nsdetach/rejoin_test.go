package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
)

func TestRejoinDryRun(t *testing.T) {
	nstest.RequireRoot(t)
	ns := "nsdetach-cli-test-" + strconv.Itoa(os.Getpid())
	shim := func(t *testing.T, mount string) *nstest.Holder {
		if err := os.MkdirAll(mount, 0o755); err != nil {
			t.Fatal(err)
		}
		return nstest.StartHolder(t, nstest.HolderSpec{Comm: "containerd-shim-runc-v2",
			Args: []string{"-namespace", ns, "-id", "x"}, Tmpfs: []string{mount}})
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The fake shims run this test binary: it is the engine's shim binary
	// here.
	shimFlag := "--shim=" + exe
	cases := []struct {
		name     string
		shims    int
		args     func(root string) []string
		wantCode int
		wantOut  string
	}{
		{"no candidate", 0, func(r string) []string { return []string{"--root", r, "--", "dockerd", "--containerd-namespace", ns} }, exitOK, "nothing to rejoin"},
		{"one candidate, root from dockerd's flags", 1, func(r string) []string {
			return []string{"--", "/usr/bin/dockerd", "-H", "fd://", "--data-root", r, "--containerd-namespace=" + ns}
		}, exitOK, "rejoining mnt:[%d]"},
		{"two candidates", 2, func(r string) []string { return []string{"--root", r, "dockerd", "--containerd-namespace", ns} }, exitFound, "not rejoining: 2 mount namespaces"},
		{"a fake shim that runs no shim binary of this view", 1, func(r string) []string {
			return []string{"--shim", "/bin/true", "--root", r, "--", "dockerd", "--containerd-namespace", ns}
		}, exitOK, "which is none of the shim binaries of this view (/bin/true)"},
		{"no dockerd", 0, func(r string) []string { return []string{"--root", r, "--"} }, exitUsage, ""},
		{"a relative root", 0, func(r string) []string { return []string{"--root", "docker", "--", "dockerd"} }, exitUsage, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(nstest.Dir(t), "docker")
			want := c.wantOut
			for i := 0; i < c.shims; i++ {
				h := shim(t, filepath.Join(root, "overlay2", "l"+strconv.Itoa(i), "merged"))
				if strings.Contains(c.wantOut, "%d") {
					want = fmt.Sprintf(c.wantOut, h.Namespace)
				}
			}
			var out, errOut bytes.Buffer
			args := c.args(root)
			if !strings.HasPrefix(args[0], "--shim") {
				args = append([]string{shimFlag}, args...)
			}
			code := run(append([]string{"rejoin", "--dry-run"}, args...), &out, &errOut)
			if code != c.wantCode || !strings.Contains(out.String(), want) {
				t.Errorf("exit %d, want %d; stdout %q does not contain %q; stderr %q", code, c.wantCode, out.String(), want, errOut.String())
			}
			if c.wantCode == exitUsage && errOut.Len() == 0 {
				t.Error("a usage error printed nothing on stderr")
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		root := filepath.Join(nstest.Dir(t), "docker")
		h := shim(t, filepath.Join(root, "overlay2", "l1", "merged"))
		var out bytes.Buffer
		if code := run([]string{"rejoin", "--dry-run", "--json", shimFlag, "--root", root, "--", "dockerd", "--containerd-namespace", ns}, &out, &out); code != exitOK {
			t.Fatalf("exit %d: %s", code, out.String())
		}
		var d daemon.RejoinDecision
		if err := json.Unmarshal(out.Bytes(), &d); err != nil {
			t.Fatalf("rejoin --json is not one JSON document: %v\n%s", err, out.String())
		}
		if !d.Rejoin || d.Target.Inode != h.Namespace || d.DataRoot != root || d.ContainerdNamespace != ns {
			t.Errorf("decision %+v", d)
		}
	})
}
