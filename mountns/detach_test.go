package mountns_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

func TestDetachAll(t *testing.T) {
	nstest.RequireRoot(t)
	for name, build := range fixtures {
		t.Run(name, func(t *testing.T) {
			f := build(t)
			if !mountedInHolder(f.holder, f.view) {
				t.Fatalf("fixture: holder does not have %s", f.view)
			}
			rep, err := mountns.DetachAll(context.Background(), f.target, mountns.WithRoot(f.root))
			if err != nil {
				t.Fatalf("DetachAll: %v\n%+v", err, rep)
			}
			if mountedInHolder(f.holder, f.view) {
				t.Errorf("holder still has %s", f.view)
			}
			if !mountedInHolder(f.holder, f.other) {
				t.Errorf("holder lost the unrelated mount %s", f.other)
			}
			by, remaining := rep.Count()
			if by[mountns.Detached] != 1 || remaining != 0 || len(rep.Namespaces) != 1 {
				t.Errorf("report: %v remaining %d; %+v", by, remaining, rep)
			}
		})
	}
}

func TestDetachDryRunChangesNothing(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["overlay held by a shim"](t)
	rep, err := mountns.DetachAll(context.Background(), f.target, mountns.WithRoot(f.root), mountns.WithDryRun(true))
	var de *mountns.DetachError
	if !errors.As(err, &de) {
		t.Fatalf("dry run: want a DetachError (the mount remains), got %v", err)
	}
	by, remaining := rep.Count()
	if by[mountns.WouldDetach] != 1 || by[mountns.Detached] != 0 || remaining != 1 {
		t.Errorf("dry-run report: %v remaining %d", by, remaining)
	}
	if !mountedInHolder(f.holder, f.view) {
		t.Error("dry run unmounted the holder's mount")
	}
}

func TestDetachHolderExitsBetweenScanAndDetach(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["overlay held by a shim"](t)
	holders, err := mountns.FindHolders(context.Background(), f.target)
	if err != nil || len(holders) != 1 {
		t.Fatalf("FindHolders = %+v, %v", holders, err)
	}
	if err := f.holder.Stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := mountns.DetachHolders(context.Background(), f.target, holders, mountns.WithRoot(f.root))
	if err != nil {
		t.Fatalf("a namespace that vanished is success, got %v", err)
	}
	if !rep.Namespaces[0].Gone || rep.Namespaces[0].Result[0].Action != mountns.Gone {
		t.Errorf("want the namespace reported gone, got %+v", rep.Namespaces[0])
	}
}

func TestDetachNamespaceWithoutProcess(t *testing.T) {
	nstest.RequireRoot(t)
	if !mountns.HasNamespaceWalk() {
		t.Skip("kernel lacks NS_MNT_GET_NEXT (6.12+): a namespace no process holds cannot be found without it")
	}
	f := fixtures["overlay held by a shim"](t)
	pinNamespace(t, f.holder.PID)
	if err := f.holder.Stop(); err != nil {
		t.Fatal(err)
	}
	holders, err := mountns.FindHolders(context.Background(), f.target)
	if err != nil || len(holders) != 1 || len(holders[0].PIDs) != 0 || holders[0].Inode != f.holder.Namespace {
		t.Fatalf("want the pinned namespace with no pids, got %+v, %v", holders, err)
	}
	rep, err := mountns.DetachHolders(context.Background(), f.target, holders, mountns.WithRoot(f.root))
	if err != nil {
		t.Fatalf("DetachHolders: %v", err)
	}
	if by, _ := rep.Count(); by[mountns.Detached] != 1 {
		t.Errorf("report %+v", rep)
	}
	again, err := mountns.FindHolders(context.Background(), f.target)
	if err != nil || len(again) != 0 {
		t.Errorf("after detach: holders %+v, %v", again, err)
	}
}

func TestDetachManyNamespaces(t *testing.T) {
	nstest.RequireRoot(t)
	const n = 60
	root := filepath.Join(nstest.Dir(t), "docker")
	o := nstest.MountOverlay(t, filepath.Join(root, "overlay2", "abc"))
	holders := make([]*nstest.Holder, n)
	for i := range holders {
		holders[i] = nstest.StartHolder(t, nstest.HolderSpec{})
	}
	if err := unmount(o.Merged); err != nil {
		t.Fatal(err)
	}
	rep, err := mountns.DetachAll(context.Background(), o.Merged, mountns.WithRoot(root))
	if err != nil {
		t.Fatal(err)
	}
	if by, _ := rep.Count(); by[mountns.Detached] != n || len(rep.Namespaces) != n {
		t.Fatalf("detached %d in %d namespaces, want %d", by[mountns.Detached], len(rep.Namespaces), n)
	}
	for _, h := range holders {
		if nstest.IsMountedIn(h.PID, o.Merged) {
			t.Errorf("holder %d still has the overlay", h.PID)
		}
	}
}

func TestBadInputTouchesNothing(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["overlay held by a shim"](t)
	outside := fixtures["tmpfs mounted only in the holder"](t)
	slash := filepath.Join(nstest.Dir(t), "slash")
	if err := os.Symlink("/", slash); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, target, root string
		check              func(error) bool
	}{
		{"relative path", "docker/x", f.root, isPathError},
		{"unclean path", f.target + "/../merged", f.root, isPathError},
		{"empty path", "", f.root, isPathError},
		{"root is /", f.target, "/", isPathError},
		{"root is a symlink to /", f.target, slash, isPathError},
		{"root is a symlink to /, target through it", slash + f.target, slash, isPathError},
		{"no root", f.target, "", isPathError},
		{"root missing", f.target, "/nonexistent-nsdetach-root", isPathError},
		{"outside the root", outside.target, f.root, isOutside},
		{"sibling with the root as prefix", f.root + "-x/merged", f.root, isOutside},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := mountns.DetachAll(context.Background(), c.target, mountns.WithRoot(c.root))
			if err == nil || !c.check(err) {
				t.Fatalf("DetachAll(%q, root %q) = %v", c.target, c.root, err)
			}
			if !mountedInHolder(f.holder, f.view) || !mountedInHolder(outside.holder, outside.view) {
				t.Fatal("a refused call unmounted something")
			}
		})
	}
}

func TestUnmountFastPathDoesNoScan(t *testing.T) {
	nstest.RequireRoot(t)
	root := filepath.Join(nstest.Dir(t), "docker")
	o := nstest.MountOverlay(t, filepath.Join(root, "overlay2", "abc"))
	var scans nstest.Scans
	rep, err := mountns.Unmount(context.Background(), o.Merged, mountns.WithRoot(root), mountns.WithLister(&scans))
	if err != nil || rep.Local != mountns.LocalUnmounted {
		t.Fatalf("Unmount = %+v, %v", rep, err)
	}
	if scans.Count() != 0 {
		t.Errorf("fast path listed namespaces %d times", scans.Count())
	}
	if nstest.IsMountPoint(o.Merged) {
		t.Error("still mounted")
	}
	// Not mounted here: now it must scan, and find nothing.
	rep, err = mountns.Unmount(context.Background(), o.Merged, mountns.WithRoot(root), mountns.WithLister(&scans))
	if err != nil || rep.Local != mountns.LocalNotMounted || scans.Count() != 1 {
		t.Errorf("slow path: %+v, %v, %d scans", rep, err, scans.Count())
	}
}

func TestUnmountFallsBackToHolders(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["overlay held by a shim"](t)
	rep, err := mountns.Unmount(context.Background(), f.target, mountns.WithRoot(f.root))
	if err != nil || rep.Local != mountns.LocalNotMounted {
		t.Fatalf("Unmount = %+v, %v", rep, err)
	}
	if mountedInHolder(f.holder, f.view) {
		t.Error("holder still has the mount")
	}
}

func isPathError(err error) bool {
	var pe *mountns.PathError
	return errors.As(err, &pe)
}

func isOutside(err error) bool {
	var oe *mountns.OutsideRootError
	return errors.As(err, &oe)
}

// Detaching must never move the caller's own threads: every thread that
// joined a holder's namespace ends with its goroutine, and the main thread,
// which /proc/self names, never joins one.
func TestCallerThreadsStayHome(t *testing.T) {
	nstest.RequireRoot(t)
	home, err := nstest.NamespaceOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		f := fixtures["tmpfs mounted only in the holder"](t)
		if _, err := mountns.DetachAll(context.Background(), f.target, mountns.WithRoot(f.root)); err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := filepath.Glob("/proc/self/task/*/ns/mnt")
	if err != nil || len(tasks) == 0 {
		t.Fatal(tasks, err)
	}
	for _, p := range tasks {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			continue // the thread ended meanwhile
		}
		if st.Ino != home && !threadEnds(filepath.Dir(filepath.Dir(p))) {
			t.Errorf("%s is in mnt:[%d], want the caller's mnt:[%d]", p, st.Ino, home)
		}
	}
}

// TestNamespaceCallerMayNotEnter: without CAP_SYS_CHROOT, setns into a mount
// namespace fails with EPERM; the error names the namespace and the call,
// errors.Is finds EPERM, and nothing is unmounted.
func TestNamespaceCallerMayNotEnter(t *testing.T) {
	nstest.RequireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is needed to drop a capability: " + err.Error())
	}
	f := fixtures["tmpfs mounted only in the holder"](t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--bounding-set", "-sys_chroot", "--", self)
	cmd.Env = append(os.Environ(), detachEnv+"="+f.target+" "+f.root)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := string(out)
	// The namespace named may be the holder's or another that only setns
	// could read (one no process holds): either way the scan stops there.
	for _, want := range []string{"eperm=true", "mnt:[", "setns", "operation not permitted"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if !mountedInHolder(f.holder, f.view) {
		t.Error("the mount was detached without the capability")
	}
}

// pinNamespace keeps pid's mount namespace alive without any process in it:
// with an nsfs bind mount, or, where the kernel refuses that bind as a
// possible namespace loop (it compares namespace ids, which 6.18 no longer
// hands out in creation order), with an fd held by a process that lives in
// another namespace. Either way /proc/*/ns/mnt no longer names it.
func pinNamespace(t *testing.T, pid int) {
	t.Helper()
	nsPath := fmt.Sprintf("/proc/%d/ns/mnt", pid)
	pin := filepath.Join(nstest.Dir(t), "pin")
	if err := os.WriteFile(pin, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := bind(nsPath, pin)
	if err == nil {
		t.Cleanup(func() { unmount(pin) })
		return
	}
	if err != unix.EINVAL {
		t.Fatal(err)
	}
	t.Logf("nsfs bind refused (%v): pinning with an fd instead", err)
	f, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keeper := exec.Command("sleep", "infinity")
	keeper.ExtraFiles = []*os.File{f}
	if err := keeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keeper.Process.Kill(); keeper.Wait() })
}

// threadEnds reports whether the thread whose /proc/self/task/TID directory
// is given goes away within a few seconds: a thread that joined a holder's
// namespace may still be on its way out when its goroutine has delivered
// the result.
func threadEnds(task string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			return true
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	return false
}

// TestUnmountRootSymlinkToSlash: a root that is a symlink to / passes the
// text check; Unmount's fast path must not follow it to a mount outside
// any data root (here a tmpfs of the caller's own namespace).
func TestUnmountRootSymlinkToSlash(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	victim := filepath.Join(dir, "victim")
	nstest.MountTmpfs(t, victim)
	slash := filepath.Join(dir, "docker")
	if err := os.Symlink("/", slash); err != nil {
		t.Fatal(err)
	}
	var scans nstest.Scans
	_, err := mountns.Unmount(context.Background(), slash+victim, mountns.WithRoot(slash), mountns.WithLister(&scans))
	if !isPathError(err) || !strings.Contains(err.Error(), "resolves to /") {
		t.Errorf("Unmount through a root symlinked to / = %v, want a PathError", err)
	}
	if !nstest.IsMountPoint(victim) {
		t.Error("the unmount followed the root's symlink to /")
	}
	if scans.Count() != 0 {
		t.Errorf("a refused call scanned %d times", scans.Count())
	}
}
