package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
)

func TestDoctorCommand(t *testing.T) {
	nstest.RequireRoot(t)
	in := newIncident(t)
	dir := filepath.Dir(in.root)
	good := filepath.Join(dir, "daemon.json")
	bad := filepath.Join(dir, "bad.json")
	for f, body := range map[string]string{good: `{"live-restore": true}`, bad: "{\n  \"live-restore\": true\n  \"debug\": true\n}"} {
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A dockerd restarted into a namespace of its own, after the leak.
	dockerd := nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd", Args: []string{"--data-root", in.root}})
	pid := strconv.Itoa(dockerd.PID)
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  string
	}{
		{"the incident", []string{"doctor", "--pid", pid, "--config", good}, exitFound, []string{
			"[WARNING] mount-namespace: dockerd runs in mount namespace mnt:[" + strconv.FormatUint(dockerd.Namespace, 10) + "]",
			"[PROBLEM] live-restore: live-restore is on (" + good + ")",
			"[PROBLEM] leaks: 1 stale and 1 pinned leaked mounts under " + in.root,
			"containerd-shim (started ",
			"  why: ",
			"    printf '[Service]\\nMountFlags=shared\\n' > " + daemon.DropInPath,
			"    nsdetach detach --root " + in.root + " --stale-only",
			"doctor: 2 problems, 1 warnings",
		}, ""},
		{"a pid that is not dockerd", []string{"doctor", "--pid", strconv.Itoa(in.old.PID)}, exitUsage, nil,
			"--pid " + strconv.Itoa(in.old.PID) + ": is \"containerd-shim\", not dockerd"},
		{"daemon.json that is not JSON", []string{"doctor", "--pid", pid, "--config", bad}, exitUsage, nil,
			"daemon config " + bad + ": is not valid JSON at line 3"},
		{"a missing --root", []string{"doctor", "--pid", pid, "--root", filepath.Join(dir, "nope")}, exitUsage, nil,
			"does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(c.args, &out, &errOut)
			t.Logf("nsdetach %s:\n%s%s", strings.Join(c.args, " "), out.String(), errOut.String())
			if code != c.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.wantCode, out.String(), errOut.String())
			}
			for _, w := range c.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout does not contain %q:\n%s", w, out.String())
				}
			}
			if c.wantErr != "" && (!strings.Contains(errOut.String(), c.wantErr) || strings.Count(errOut.String(), "\n") != 1) {
				t.Errorf("stderr %q: want one line containing %q", errOut.String(), c.wantErr)
			}
		})
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"doctor", "--json", "--pid", pid}, &out, &errOut); code != exitFound {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var d daemon.Diagnosis
	if err := json.Unmarshal(out.Bytes(), &d); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out.String())
	}
	if d.DockerdPID != dockerd.PID || d.DataRoot != in.root || d.Leaks == nil || d.Leaks.Count()[daemon.Stale] != 1 {
		t.Errorf("diagnosis %+v", d)
	}
}
