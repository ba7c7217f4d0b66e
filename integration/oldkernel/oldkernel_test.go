package oldkernel

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRemoveDir(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name string
		// setup builds the fixture under base and returns the operations.
		setup func(t *testing.T, base string) []string
		want  []string
		// busy is how many calls the supervisor, not the kernel, failed;
		// notified how many it answered at all (a notification cancelled
		// by a signal is asked again and counted once).
		busy, notified uint64
	}{{
		name: "plain directory",
		setup: func(t *testing.T, base string) []string {
			mkdirs(t, base+"/d")
			return []string{"rmdir:" + base + "/d"}
		},
		want: []string{"ok"}, notified: 1,
	}, {
		name:  "mount point held by another namespace",
		setup: onHeld("rmdir:"),
		want:  []string{"EBUSY"}, busy: 1, notified: 1,
	}, {
		name:  "held, unlinkat AT_REMOVEDIR",
		setup: onHeld("unlinkat-dir:"),
		want:  []string{"EBUSY"}, busy: 1, notified: 1,
	}, {
		name: "held, relative to cwd",
		setup: func(t *testing.T, base string) []string {
			foreignMountPoint(t, base+"/m")
			mkdirs(t, base+"/sub")
			return []string{"chdir:" + base + "/sub", "rmdir:../m", "chdir:" + base, "unlinkat-dir:m"}
		},
		want: []string{"ok", "EBUSY", "ok", "EBUSY"}, busy: 2, notified: 2,
	}, {
		name: "held, relative to dirfd",
		setup: func(t *testing.T, base string) []string {
			foreignMountPoint(t, base+"/m")
			return []string{"rmdirat:" + base + ":m", "rmdirat:/:" + strings.TrimPrefix(base, "/") + "/m"}
		},
		want: []string{"EBUSY", "EBUSY"}, busy: 2, notified: 2,
	}, {
		name: "held, seen through a bind mount",
		setup: func(t *testing.T, base string) []string {
			mkdirs(t, base+"/real")
			bindMount(t, base+"/real", base+"/alias")
			foreignMountPoint(t, base+"/real/m")
			return []string{"rmdir:" + base + "/alias/m"}
		},
		want: []string{"EBUSY"}, busy: 1, notified: 1,
	}, {
		name: "held elsewhere under the same name",
		setup: func(t *testing.T, base string) []string {
			foreignMountPoint(t, base+"/a/m")
			mkdirs(t, base+"/b/m")
			return []string{"rmdir:" + base + "/b/m"}
		},
		want: []string{"ok"}, notified: 1,
	}, {
		name: "mount point in the caller's own namespace",
		setup: func(t *testing.T, base string) []string {
			mountTmpfs(t, base+"/m")
			return []string{"rmdir:" + base + "/m", "unlinkat-dir:" + base + "/m"}
		},
		// The kernel's own answer: the supervisor lets both through.
		want: []string{"EBUSY", "EBUSY"}, notified: 2,
	}, {
		name: "files are never looked at",
		setup: func(t *testing.T, base string) []string {
			foreignMountPoint(t, base+"/m")
			for _, f := range []string{"f", "g", "h"} {
				if err := os.WriteFile(base+"/"+f, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return []string{"unlink:" + base + "/f", "unlinkat:" + base + "/g", "unlinkat-file-at:" + base + ":h", "unlink:" + base + "/m"}
		},
		want: []string{"ok", "ok", "ok", "EISDIR"},
	}, {
		name: "kernel errors pass through",
		setup: func(t *testing.T, base string) []string {
			mkdirs(t, base+"/full/x")
			if err := os.WriteFile(base+"/file", nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"rmdir:" + base + "/full", "rmdir:" + base + "/missing", "rmdir:" + base + "/file", "rmdir:" + base + "/full/.", "rmdir:"}
		},
		want: []string{"ENOTEMPTY", "ENOENT", "ENOTDIR", "EINVAL", "ENOENT"}, notified: 5,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			ops := tc.setup(t, base)
			got, res := runUnder(t, Config{}, ops...)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("results %q, want %q", got, tc.want)
			}
			if answered := res.Stats.Busy + res.Stats.Continued; res.Stats.Busy != tc.busy || answered != tc.notified {
				t.Errorf("supervisor answered %d of %d notifications with EBUSY, want %d of %d (%+v)",
					res.Stats.Busy, answered, tc.busy, tc.notified, res.Stats)
			}
			if res.Stats.CheckErrors != 0 {
				t.Errorf("%d checks failed", res.Stats.CheckErrors)
			}
		})
	}
}

// onHeld is a setup that makes base/m a mount point that another namespace
// holds and applies op (an operation such as "rmdir:") to it.
func onHeld(op string) func(t *testing.T, base string) []string {
	return func(t *testing.T, base string) []string {
		foreignMountPoint(t, base+"/m")
		return []string{op + base + "/m"}
	}
}

// TestKernelDetachesWithoutEmulator shows why the emulator exists: this
// kernel removes a directory that another namespace has mounted on.
func TestKernelDetachesWithoutEmulator(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir() + "/m"
	foreignMountPoint(t, dir)
	if err := rmdirSyscall(dir); err != nil {
		t.Skipf("this kernel has pre-3.18 semantics already: rmdir: %v", err)
	}
}

func TestManyRemovals(t *testing.T) {
	requireRoot(t)
	n := 10000
	if testing.Short() {
		n = 1000
	}
	base := t.TempDir()
	// A foreign namespace that holds a mount, so every check has a mount
	// table to read, and a mount point it must refuse.
	foreignMountPoint(t, base+"/held")

	plainFails, plain := mkdirRmdirLoop(n, base+"/plain")
	if plainFails != 0 {
		t.Fatalf("%d of %d mkdir/rmdir pairs failed without the emulator", plainFails, n)
	}
	got, res := runUnder(t, Config{}, "loop:"+strconv.Itoa(n)+":"+base+"/d", "rmdir:"+base+"/held")
	if len(got) != 2 {
		t.Fatalf("helper output %q", got)
	}
	f := strings.Fields(got[0])
	fails, _ := strconv.Atoi(f[0])
	ns, _ := strconv.ParseInt(f[1], 10, 64)
	if fails != 0 {
		t.Errorf("%d of %d mkdir/rmdir pairs failed under the emulator", fails, n)
	}
	if got[1] != "EBUSY" {
		t.Errorf("rmdir of the held mount point after the loop: %s, want EBUSY", got[1])
	}
	// A signal (the Go runtime's preemption SIGURG) that interrupts a
	// caller waiting for its answer cancels the notification and restarts
	// the call: Gone counts those, and they are not failures.
	if res.Stats.Continued != uint64(n) || res.Stats.Busy != 1 || res.Stats.CheckErrors != 0 {
		t.Errorf("stats %+v, want %d let through, 1 EBUSY, no check errors", res.Stats, n)
	}
	t.Logf("%d mkdir+rmdir pairs: %v under the emulator (%v per rmdir), %v without",
		n, nsDuration(ns), nsDuration(ns/int64(n)), plain)
}

func TestExitStatus(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		ops  []string
		want int
	}{
		{nil, 0},
		{[]string{"exit:3"}, 3},
		{[]string{"exit:255"}, 255},
		{[]string{"kill-self"}, 128 + int(syscall.SIGTERM)},
	}
	for _, tc := range tests {
		t.Run(strings.Join(append([]string{"ops"}, tc.ops...), " "), func(t *testing.T) {
			_, res := runUnder(t, Config{}, tc.ops...)
			if res.ExitCode != tc.want {
				t.Errorf("exit code %d, want %d", res.ExitCode, tc.want)
			}
		})
	}
}

func TestForwardSignals(t *testing.T) {
	requireRoot(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			done := startPause(context.Background(), t, Config{Forward: []os.Signal{syscall.SIGTERM, syscall.SIGINT}})
			// Run has caught the signal since before the helper started.
			if err := unix.Kill(os.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			if res := <-done; res.ExitCode != 128+int(sig) {
				t.Errorf("exit code %d, want %d", res.ExitCode, 128+int(sig))
			}
			checkNoListener(t)
		})
	}
}

// TestDescendants checks what happens to a process that inherited the
// filter and outlives the command: by default Run answers for it until it
// exits; with Abandon its rmdir fails with ENOSYS once Run has returned.
func TestDescendants(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		abandon bool
		want    string
	}{{false, "EBUSY"}, {true, "ENOSYS"}} {
		t.Run("abandon="+strconv.FormatBool(tc.abandon), func(t *testing.T) {
			base := t.TempDir()
			foreignMountPoint(t, base+"/m")
			stdinR, stdinW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdinR.Close()
			defer stdinW.Close()
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer outR.Close()
			out := bufio.NewReader(outR)

			done := make(chan Result, 1)
			go func() {
				defer outW.Close()
				_, res := runUnder(t, Config{Stdin: stdinR, Stdout: outW, Abandon: tc.abandon}, "orphan", "rmdir:"+base+"/m")
				done <- res
			}()
			line, _ := out.ReadString('\n')
			pid, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("no orphan pid: %q", line)
			}
			t.Cleanup(func() { reap(t, pid) })

			var res Result
			if tc.abandon {
				// Run returns while the orphan still waits for its stdin.
				res = <-done
			}
			stdinW.Close()
			var got []string
			for range 2 {
				l, err := out.ReadString('\n')
				if err != nil {
					t.Fatalf("orphan output so far %q: %v", got, err)
				}
				got = append(got, strings.TrimSpace(l))
			}
			if !tc.abandon {
				res = <-done
			}
			if want := []string{"ok", tc.want}; !reflect.DeepEqual(got, want) {
				t.Errorf("orphan says %q, want %q", got, want)
			}
			if res.ExitCode != 7 {
				t.Errorf("exit code %d, want the command's 7", res.ExitCode)
			}
		})
	}
}

// reap waits for pid, an orphan re-parented to us (we are a subreaper).
func reap(t *testing.T, pid int) {
	t.Helper()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Errorf("reap %d: %v", pid, err)
	}
}

func TestStartFailure(t *testing.T) {
	requireRoot(t)
	_, err := Run(context.Background(), Config{Args: []string{filepath.Join(t.TempDir(), "no-such-command")}})
	if err == nil {
		t.Fatal("Run of a missing command succeeded")
	}
	checkNoListener(t)
}

func TestCancel(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startPause(ctx, t, Config{})
	cancel()
	if res := <-done; res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", res.ExitCode, 128+int(syscall.SIGKILL))
	}
	checkNoListener(t)
}
