package mountns_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
)

// inHolder runs a shell script inside the holder's mount namespace: what a
// hostile container could do between nsdetach's scan and its detach.
func inHolder(t *testing.T, h *nstest.Holder, script string) {
	t.Helper()
	out, err := exec.Command("nsenter", "-t", strconv.Itoa(h.PID), "-m", "--", "sh", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("in holder %d: %v\n%s", h.PID, err, out)
	}
}

// TestHostileHolder: a holder changes its namespace between the scan and the
// detach. In every case the intended mount is detached or the refusal is
// reported, and every other mount of the namespace is still mounted.
func TestHostileHolder(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name string
		// attack runs in the holder after the scan; victims are mounts (in
		// the holder's view) that must survive.
		attack     func(t *testing.T, h *nstest.Holder, root, target, outside string) (victims []string)
		wantAction mountns.Action
		wantReason string
		// steersNaive: `nsenter -m umount -l target` unmounts victims[0].
		steersNaive bool
	}{
		{
			name: "symlink in an intermediate component",
			attack: func(t *testing.T, h *nstest.Holder, root, target, outside string) []string {
				// Over-mount <root>/a with a tmpfs whose "b" is a symlink to a
				// directory holding a mount outside the root.
				inHolder(t, h, fmt.Sprintf(`mkdir -p %[3]s/b/merged; mount -t tmpfs victim %[3]s/b/merged
					mount -t tmpfs evil %[1]s/a; ln -s %[3]s/b %[1]s/a/b`, root, target, outside))
				return []string{filepath.Join(outside, "b", "merged")}
			},
			wantAction: mountns.Refused, wantReason: "symlink", steersNaive: true,
		},
		{
			name: "over-mounted mount point",
			attack: func(t *testing.T, h *nstest.Holder, root, target, outside string) []string {
				inHolder(t, h, "mount -t tmpfs over "+target)
				return []string{target}
			},
			wantAction: mountns.Refused, wantReason: "not the scanned mount",
		},
		{
			name: "mount point renamed after the scan",
			attack: func(t *testing.T, h *nstest.Holder, root, target, outside string) []string {
				inHolder(t, h, fmt.Sprintf(`mv %[1]s/a %[1]s/a2; mkdir -p %[2]s; mount -t tmpfs newcomer %[2]s`, root, target))
				return []string{target, filepath.Join(root, "a2", "b", "merged")}
			},
			wantAction: mountns.Refused, wantReason: "not the scanned mount",
		},
	}
	for _, c := range cases {
		for _, legacy := range []bool{false, true} {
			name := c.name
			if legacy {
				name += " (pre-5.8 resolver)"
			}
			t.Run(name, func(t *testing.T) {
				dir := nstest.Dir(t)
				root := filepath.Join(dir, "docker")
				target := filepath.Join(root, "a", "b", "merged")
				outside := filepath.Join(dir, "outside")
				mkdirs(t, target, outside)
				h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{target}})
				resolver := mountns.WithLegacyResolve(legacy)
				holders, err := mountns.FindHolders(context.Background(), target, resolver)
				if err != nil || len(holders) != 1 {
					t.Fatalf("scan: %+v, %v", holders, err)
				}
				victims := c.attack(t, h, root, target, outside)
				rep, err := mountns.DetachHolders(context.Background(), target, holders, mountns.WithRoot(root), resolver)
				var de *mountns.DetachError
				if !errors.As(err, &de) {
					t.Errorf("want a DetachError reporting the refusal, got %v", err)
				}
				r := rep.Namespaces[0].Result[0]
				if r.Action != c.wantAction || !strings.Contains(r.Reason, c.wantReason) {
					t.Errorf("result %s %q, want %s containing %q", r.Action, r.Reason, c.wantAction, c.wantReason)
				}
				for _, v := range victims {
					if !nstest.IsMountedIn(h.PID, v) {
						t.Errorf("%s was unmounted", v)
					}
				}
				if c.steersNaive {
					// The control: what operators do by hand is steered onto
					// the victim, so the attack above is real.
					inHolder(t, h, "umount -l "+target)
					if nstest.IsMountedIn(h.PID, victims[0]) {
						t.Errorf("control: nsenter umount -l %s did not reach %s; the attack is not exercised", target, victims[0])
					}
				}
			})
		}
	}
}

// TestPIDReusedBetweenScanAndDetach: the holder exits and its pid is given
// to a new process in the caller's own namespace, which has a mount at the
// same path. The detach must not follow the pid there.
func TestPIDReusedBetweenScanAndDetach(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["tmpfs mounted only in the holder"](t)
	holders, err := mountns.FindHolders(context.Background(), f.target)
	if err != nil || len(holders) != 1 {
		t.Fatalf("scan: %+v, %v", holders, err)
	}
	pid := f.holder.PID
	if err := f.holder.Stop(); err != nil {
		t.Fatal(err)
	}
	nstest.MountTmpfs(t, f.target) // the same path, mounted in the caller's namespace
	impostor := startWithPID(t, pid)
	if impostor == nil {
		t.Skipf("could not get pid %d again through /proc/sys/kernel/ns_last_pid (another process took it each time)", pid)
	}
	rep, err := mountns.DetachHolders(context.Background(), f.target, holders, mountns.WithRoot(f.root))
	if err != nil {
		t.Fatalf("the old namespace is gone, which is success: %v", err)
	}
	if !rep.Namespaces[0].Gone {
		t.Errorf("want the namespace reported gone, got %+v", rep.Namespaces[0])
	}
	if !nstest.IsMountPoint(f.target) {
		t.Error("the caller's own mount at the same path was unmounted through the reused pid")
	}
}

// startWithPID starts `sleep` as pid, in the caller's namespace, through
// ns_last_pid; nil when another process keeps taking the pid first.
func startWithPID(t *testing.T, pid int) *exec.Cmd {
	t.Helper()
	for try := 0; try < 100; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot set ns_last_pid: %v", err)
		}
		cmd := exec.Command("sleep", "infinity")
		cmd.SysProcAttr = &syscall.SysProcAttr{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			return cmd
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	return nil
}

// TestUserNamespacedHolder: mounts a user-namespaced holder copied are
// locked; the kernel refuses to unmount them and the report says so, while
// its own mounts under the root are detached and the rest stay.
func TestUserNamespacedHolder(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	root := filepath.Join(dir, "docker")
	locked := filepath.Join(root, "locked")
	own := filepath.Join(root, "own")
	other := filepath.Join(dir, "other")
	mkdirs(t, own, other)
	nstest.MountTmpfs(t, locked)
	h := nstest.StartHolder(t, nstest.HolderSpec{UserNS: true, Tmpfs: []string{own, other}})
	if err := unmount(locked); err != nil {
		t.Fatal(err)
	}
	rep, err := mountns.DetachAll(context.Background(), root, mountns.WithRoot(root))
	var de *mountns.DetachError
	if !errors.As(err, &de) {
		t.Fatalf("want a DetachError for the locked mount, got %v", err)
	}
	actions := map[string]mountns.MountReport{}
	for _, r := range rep.Namespaces[0].Result {
		actions[r.Mountpoint] = r
	}
	if r := actions[locked]; r.Action != mountns.Failed || !r.Remains || !strings.Contains(r.Reason, "locked") {
		t.Errorf("locked mount: %+v", r)
	}
	if r := actions[own]; r.Action != mountns.Detached {
		t.Errorf("holder's own mount: %+v", r)
	}
	if !nstest.IsMountedIn(h.PID, locked) || !nstest.IsMountedIn(h.PID, other) || nstest.IsMountedIn(h.PID, own) {
		t.Error("wrong set of mounts left in the holder")
	}
}

// TestLiveContainerIsNeverTouched: a namespace whose root is a layer under
// the data root is a running container; detaching the whole data root
// refuses every mount in it (its rootfs, its /run) and says why.
func TestLiveContainerIsNeverTouched(t *testing.T) {
	nstest.RequireRoot(t)
	root := filepath.Join(nstest.Dir(t), "docker")
	o := nstest.MountOverlay(t, filepath.Join(root, "overlay2", "c1"))
	run := filepath.Join(o.Merged, "run")
	mkdirs(t, run)
	h := nstest.StartHolder(t, nstest.HolderSpec{Tmpfs: []string{run}, PivotRoot: o.Merged})
	rep, err := mountns.DetachAll(context.Background(), root, mountns.WithRoot(root))
	var de *mountns.DetachError
	if !errors.As(err, &de) {
		t.Fatalf("want the refusals reported, got %v", err)
	}
	var ns *mountns.NamespaceReport
	for i := range rep.Namespaces {
		if rep.Namespaces[i].Inode == h.Namespace {
			ns = &rep.Namespaces[i]
		}
	}
	if ns == nil || len(ns.Result) < 2 {
		t.Fatalf("the container's namespace was not reported with its rootfs and /run: %+v", rep)
	}
	for _, r := range ns.Result {
		if r.Action != mountns.Refused || !strings.Contains(r.Reason, "live") {
			t.Errorf("%s: %s %q, want refused as live", r.Mountpoint, r.Action, r.Reason)
		}
	}
	if !nstest.IsMountedIn(h.PID, "/run") || !nstest.IsMountedIn(h.PID, "/") {
		t.Error("the container lost a mount")
	}
}

// TestNamespaceInodeReused: namespace inode numbers are recycled. A holder
// whose 64-bit namespace id no longer matches (as after its namespace died
// and a new one got the inode) is not entered.
func TestNamespaceInodeReused(t *testing.T) {
	nstest.RequireRoot(t)
	if !mountns.HasNamespaceWalk() {
		t.Skip("kernel lacks the nsfs walk and NS_GET_MNTNS_ID: namespaces have no id besides the reusable inode")
	}
	f := fixtures["tmpfs mounted only in the holder"](t)
	holders, err := mountns.FindHolders(context.Background(), f.target)
	if err != nil || len(holders) != 1 || holders[0].ID == 0 {
		t.Fatalf("scan: %+v, %v", holders, err)
	}
	holders[0].ID++ // the same inode, another namespace
	rep, err := mountns.DetachHolders(context.Background(), f.target, holders, mountns.WithRoot(f.root))
	if err != nil || !rep.Namespaces[0].Gone {
		t.Fatalf("want the scanned namespace reported gone, got %+v, %v", rep, err)
	}
	if !mountedInHolder(f.holder, f.view) {
		t.Error("a namespace with another id was entered")
	}
}
