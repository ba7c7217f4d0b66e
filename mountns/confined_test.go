package mountns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// confinedEnv makes the test binary a caller confined like a DaemonSet's
// pod: its "/" is a tmpfs of its own, with the data root bind-mounted in.
// The value is a confinedSpec (JSON).
const confinedEnv = "MOUNTNS_TEST_CONFINED"

type confinedSpec struct {
	// NewRoot is the directory the caller's tmpfs root is mounted on.
	NewRoot string
	// Data is the data root in the test's view; At is where the caller
	// sees it (and scans and detaches).
	Data, At string
}

// confinedOutcome is what the confined caller found and did.
type confinedOutcome struct {
	Holders    []mountns.Holder
	HoldersErr string
	Report     mountns.Report
	DetachErr  string
}

// runConfined sets the confined caller up (it runs in a mount namespace of
// its own, private: see startConfined) and runs FindHolders and DetachAll
// of its data root there.
func runConfined(raw string) int {
	var c confinedSpec
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		fmt.Fprintln(os.Stderr, "bad spec:", err)
		return 2
	}
	at := filepath.Join(c.NewRoot, c.At)
	proc := filepath.Join(c.NewRoot, "proc")
	for _, step := range []func() error{
		func() error { return unix.Mount("tmpfs", c.NewRoot, "tmpfs", 0, "size=64k") },
		func() error { return os.MkdirAll(at, 0o755) },
		func() error { return unix.Mount(c.Data, at, "", unix.MS_BIND|unix.MS_REC, "") },
		func() error { return os.MkdirAll(proc, 0o755) },
		func() error { return unix.Mount("/proc", proc, "", unix.MS_BIND|unix.MS_REC, "") },
		func() error { return unix.Chdir(c.NewRoot) },
		func() error { return unix.PivotRoot(".", ".") },
		func() error { return unix.Unmount(".", unix.MNT_DETACH) },
		func() error { return unix.Chdir("/") },
	} {
		if err := step(); err != nil {
			fmt.Fprintln(os.Stderr, "confining the caller:", err)
			return 2
		}
	}
	var out confinedOutcome
	ctx := context.Background()
	holders, err := mountns.FindHolders(ctx, c.At)
	out.Holders = holders
	if err != nil {
		out.HoldersErr = err.Error()
	}
	out.Report, err = mountns.DetachAll(ctx, c.At, mountns.WithRoot(c.At))
	if err != nil {
		out.DetachErr = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// startConfined runs the test binary as a confined caller and returns what
// it found and did. The process ends before this returns, and with it
// every mount it made (its namespace is its own and private).
func startConfined(t *testing.T, spec confinedSpec) confinedOutcome {
	t.Helper()
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), confinedEnv+"="+string(b))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Go makes every mount of the new namespace private after unshare.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		t.Fatalf("confined caller: %v\n%s", err, stderr.String())
	}
	var out confinedOutcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("confined caller printed %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	return out
}

// TestConfinedCaller: a caller whose "/" is not the host's (a DaemonSet's
// pod: its own root, the data root bind-mounted in) cannot place the root
// of a holder whose "/" is the host's, such as the namespace that an
// engine's old shims keep. It must still find that holder's tmpfs under the
// data root (no upperdir names it: only its place does) and detach it, and
// it must leave alone a holder whose path of the same name is another
// directory (its own tmpfs hides the data root there) and the holder's
// mount outside the data root.
func TestConfinedCaller(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name string
		at   string // where the caller sees the data root; "" the same path
	}{
		{"data root at the same path", ""},
		{"data root at another path", "/var/lib/docker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			data := filepath.Join(dir, "data")
			rel := "containers/c1/mounts/shm"
			shm := filepath.Join(data, rel)
			other := filepath.Join(dir, "other")
			newRoot := filepath.Join(dir, "newroot")
			mkdirs(t, shm, other, newRoot)
			h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{shm, other}})
			decoy := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{dir, shm}})
			at := c.at
			if at == "" {
				at = data
			}

			out := startConfined(t, confinedSpec{NewRoot: newRoot, Data: data, At: at})
			if out.HoldersErr != "" || out.DetachErr != "" {
				t.Fatalf("FindHolders: %s; DetachAll: %s", out.HoldersErr, out.DetachErr)
			}
			var found []mountns.Mount
			for _, hd := range out.Holders {
				switch hd.Inode {
				case h.Namespace:
					found = hd.Mounts
				case decoy.Namespace:
					t.Errorf("the decoy's own directory was taken for the data root: %+v", hd.Mounts)
				}
			}
			if len(found) != 1 || found[0].Mountpoint != shm || found[0].HostPath != filepath.Join(at, rel) || found[0].MatchedBy != "path" {
				t.Errorf("the holder's mounts: %+v; want %s only, at %s in the caller's view, matched by path", found, shm, filepath.Join(at, rel))
			}
			detached := 0
			for _, nr := range out.Report.Namespaces {
				for _, r := range nr.Result {
					if nr.Inode == h.Namespace && r.Mountpoint == shm && r.Action == mountns.Detached {
						detached++
					} else if r.Action == mountns.Detached {
						t.Errorf("detached %s in mnt:[%d]", r.Mountpoint, nr.Inode)
					}
				}
			}
			if detached != 1 {
				t.Errorf("the holder's %s was not detached: %+v", shm, out.Report)
			}
			if nstest.IsMountedIn(h.PID, shm) {
				t.Errorf("%s is still mounted in the holder", shm)
			}
			if !nstest.IsMountedIn(h.PID, other) {
				t.Errorf("the holder's %s, outside the data root, was detached", other)
			}
			if !nstest.IsMountedIn(decoy.PID, shm) || !nstest.IsMountedIn(decoy.PID, dir) {
				t.Error("the decoy's mounts were detached")
			}
		})
	}
}

// TestTranslationsAgree: where a holder's root has a place in the caller's
// view, translating its mount points through the target's filesystem gives
// the same places below the target as translating them through the root,
// and places nothing elsewhere.
func TestTranslationsAgree(t *testing.T) {
	nstest.RequireRoot(t)
	for name, fx := range fixtures {
		t.Run(name, func(t *testing.T) {
			f := fx(t)
			byRoot, byFS, placed, err := mountns.HostPaths(f.holder.PID, f.root)
			if err != nil {
				t.Fatal(err)
			}
			if !placed {
				t.Skip("the holder's root has no place here (chrooted: no root entry)")
			}
			if byFS[f.view] != f.target || byRoot[f.view] != f.target {
				t.Errorf("the held mount %s: through the root at %q, through the filesystem at %q; want %s", f.view, byRoot[f.view], byFS[f.view], f.target)
			}
			for mp, p := range byRoot {
				inTarget := p != "" && strings.HasPrefix(p+"/", f.root+"/")
				if (inTarget || byFS[mp] != "") && byFS[mp] != p {
					t.Errorf("mount point %s: through the root at %q, through the filesystem at %q", mp, p, byFS[mp])
				}
			}
		})
	}
}
