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
	"golang.org/x/sys/unix"
)

// incident builds the incident under a fresh data root: an old daemon
// namespace ("old", a shim) holds the layer of a removed container ("dead",
// stale) and the layer of a running container ("live", pinned), whose own
// namespace has it as its root. The test's namespace plays the restarted
// daemon and has neither.
type incident struct {
	root       string
	dead, live nstest.Overlay
	old, ctr   *nstest.Holder
}

func newIncident(t *testing.T) incident {
	t.Helper()
	root := filepath.Join(nstest.Dir(t), "docker")
	in := incident{root: root,
		dead: nstest.MountOverlay(t, filepath.Join(root, "overlay2", "dead")),
		live: nstest.MountOverlay(t, filepath.Join(root, "overlay2", "live"))}
	in.old = nstest.StartHolder(t, nstest.HolderSpec{Comm: "containerd-shim", Extra: 1})
	in.ctr = nstest.StartHolder(t, nstest.HolderSpec{PivotRoot: in.live.Merged})
	for _, m := range []string{in.dead.Merged, in.live.Merged} {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

func TestScanAndDetachRoot(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name     string
		args     func(in incident) []string
		wantCode int
		wantOut  []string
		notOut   []string
		// after: does the old namespace still hold each layer?
		deadHeld, liveHeld bool
	}{
		{"scan", func(in incident) []string { return []string{"scan", "--root", in.root} }, exitFound,
			[]string{"containerd-shim (started ", "stale   " + "%DEAD%", "layer dead", "pinned  %LIVE%", "layer live",
				"summary: 2 leaked mounts under %ROOT% (1 stale, 1 pinned); 1 in use by live containers or the engine (--all lists them)"},
			[]string{"in-use"}, true, true},
		{"scan --all", func(in incident) []string { return []string{"scan", "--all", "--root", in.root} }, exitFound,
			[]string{"[container]", "in-use  / (", "the root directory of a live container"}, nil, true, true},
		{"detach --stale-only", func(in incident) []string { return []string{"detach", "--root", in.root, "--stale-only"} }, exitOK,
			[]string{"summary: found 2 leaked mounts under %ROOT% in 1 namespaces (1 stale, 1 pinned); detached 1; remaining 1 (1 pinned left alone: --stale-only); failed 0"},
			[]string{"[1/1]"}, false, true},
		{"detach --dry-run", func(in incident) []string { return []string{"detach", "--root", in.root, "--dry-run"} }, exitFound,
			[]string{"would detach 2; remaining 2; failed 0"}, nil, true, true},
		{"detach every leak", func(in incident) []string { return []string{"detach", "--root", in.root} }, exitOK,
			[]string{"detached 2; remaining 0; failed 0"}, nil, false, false},
		{"detach PATH --stale-only", func(in incident) []string {
			return []string{"detach", in.dead.Merged, "--root", in.root, "--stale-only"}
		}, exitUsage, nil, nil, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newIncident(t)
			fill := strings.NewReplacer("%ROOT%", in.root, "%DEAD%", in.dead.Merged, "%LIVE%", in.live.Merged)
			var out, errOut bytes.Buffer
			code := run(c.args(in), &out, &errOut)
			if code != c.wantCode {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.wantCode, out.String(), errOut.String())
			}
			for _, w := range c.wantOut {
				if w = fill.Replace(w); !strings.Contains(out.String(), w) {
					t.Errorf("stdout does not contain %q:\n%s", w, out.String())
				}
			}
			for _, w := range c.notOut {
				if strings.Contains(out.String(), w) {
					t.Errorf("stdout contains %q:\n%s", w, out.String())
				}
			}
			if got := nstest.IsMountedIn(in.old.PID, in.dead.Merged); got != c.deadHeld {
				t.Errorf("old namespace holds the dead layer: %v, want %v", got, c.deadHeld)
			}
			if got := nstest.IsMountedIn(in.old.PID, in.live.Merged); got != c.liveHeld {
				t.Errorf("old namespace holds the live layer: %v, want %v", got, c.liveHeld)
			}
			if !nstest.IsMountedIn(in.ctr.PID, "/") {
				t.Error("the container lost its root")
			}
		})
	}
}

func TestScanJSON(t *testing.T) {
	nstest.RequireRoot(t)
	in := newIncident(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"scan", "--json", "--root", in.root}, &out, &errOut); code != exitFound {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	var scan daemon.LeakScan
	if err := json.Unmarshal(out.Bytes(), &scan); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out.String())
	}
	verdicts := map[string]string{}
	for _, ns := range scan.Namespaces {
		for _, l := range ns.Leaks {
			key := strconv.FormatUint(ns.Inode, 10) + ":" + l.LayerID
			verdicts[key] = string(l.Verdict)
			if l.InUse {
				verdicts[key] += ",in-use"
			}
		}
	}
	id := func(h *nstest.Holder, layer string) string { return strconv.FormatUint(h.Namespace, 10) + ":" + layer }
	want := map[string]string{id(in.old, "dead"): "stale", id(in.old, "live"): "pinned", id(in.ctr, "live"): "pinned,in-use"}
	for k, v := range want {
		if verdicts[k] != v {
			t.Errorf("%s: verdict %q, want %q (all: %v)", k, verdicts[k], v, verdicts)
		}
	}
}

func TestBadRoot(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	missing := filepath.Join(dir, "missing")
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := [][]string{
		{"scan", "--root", missing},
		{"scan", "--root", file},
		{"scan"},
		{"detach", "--root", missing},
		{"detach", "--root", missing, "--stale-only"},
		{"serve", "--listen", "127.0.0.1:0", "--root", missing},
		{"doctor", "--pid", strconv.Itoa(os.Getpid())},
	}
	for _, args := range cases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(args, &out, &errOut); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, exitUsage, errOut.String())
			}
			if lines := strings.Count(strings.TrimSpace(errOut.String()), "\n"); lines != 0 || errOut.Len() == 0 {
				t.Errorf("stderr is not one line: %q", errOut.String())
			}
		})
	}
}

// A running container whose layer the caller still has mounted: detaching
// that layer's path detaches foreign copies only, never the container's own
// mounts inside its root.
func TestDetachPathLeavesRunningContainersAlone(t *testing.T) {
	nstest.RequireRoot(t)
	root := filepath.Join(nstest.Dir(t), "docker")
	live := nstest.MountOverlay(t, filepath.Join(root, "overlay2", "live"))
	shm := filepath.Join(live.Merged, "dev", "shm")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		t.Fatal(err)
	}
	ctr := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{shm}, PivotRoot: live.Merged})
	// An old namespace that kept a stale tmpfs inside the layer's merged
	// directory: a leak under the same PATH.
	stale := filepath.Join(live.Merged, "stale")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	old := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{stale}})

	var out, errOut bytes.Buffer
	code := run([]string{"detach", live.Merged, "--root", root}, &out, &errOut)
	if code != exitOK {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "left alone /dev/shm") {
		t.Errorf("stdout does not name the container's /dev/shm as left alone:\n%s", out.String())
	}
	if !nstest.IsMountedIn(ctr.PID, "/dev/shm") || !nstest.IsMountedIn(ctr.PID, "/") {
		t.Error("the running container lost a mount")
	}
	if nstest.IsMountedIn(old.PID, stale) {
		t.Error("the stale copy was not detached")
	}
}
