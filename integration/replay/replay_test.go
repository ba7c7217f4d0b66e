package replay_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nsdetach/nsdetach/integration/replay"
	"github.com/nsdetach/nsdetach/internal/nstest"
)

// play runs cfg in a fresh directory that must be free of mounts, in every
// namespace, when the test ends (nstest.Dir).
func play(t *testing.T, cfg replay.Config) replay.Outcome {
	t.Helper()
	nstest.RequireRoot(t)
	cfg.Dir = nstest.Dir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := replay.Play(ctx, cfg, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	// The setting of the incident, whatever the path: daemon A' runs in a
	// namespace of its own, the shim in daemon A's, which it keeps alive.
	if o.Shim.Namespace != o.DaemonA.Namespace || o.DaemonA2.Namespace == o.DaemonA.Namespace {
		t.Fatalf("namespaces: daemon A %d, shim %d, daemon A' %d; want the shim in daemon A's and daemon A' in another",
			o.DaemonA.Namespace, o.Shim.Namespace, o.DaemonA2.Namespace)
	}
	if !o.After.ShimAlive {
		t.Errorf("the shim (pid %d) died during the removal: removing a layer must not stop a container", o.Shim.PID)
	}
	return o
}

func call(t *testing.T, o replay.Outcome, op string) replay.Call {
	t.Helper()
	c, ok := o.Call(op)
	if !ok {
		t.Fatalf("daemon A' made no call %s; calls: %+v", op, o.Calls)
	}
	return c
}

// logged reports whether a line of c's log has msg (exactly) at level.
func logged(c replay.Call, level, msg string) bool {
	for _, l := range c.Log {
		if l.Level == level && l.Message == msg {
			return true
		}
	}
	return false
}

// detachedIn reports whether mountns logged detaching path in namespace ns.
func detachedIn(c replay.Call, path string, ns uint64) bool {
	for _, l := range c.Log {
		if l.Message == "mountns: foreign mount" && l.Fields["action"] == "detached" &&
			l.Fields["mountpoint"] == path && l.Fields["namespace"] == fmt.Sprint(ns) {
			return true
		}
	}
	return false
}

// TestIncident replays docs/incident.md on an emulated old kernel: daemon A
// mounted the layer with moby's overlay2 and was restarted; its shim keeps
// namespace A; daemon A' (another namespace, same data root) puts and
// removes the layer.
func TestIncident(t *testing.T) {
	tests := []struct {
		path replay.Path
		// clean: the removal succeeds and nothing remains; otherwise the
		// incident's failure, exactly.
		clean bool
	}{
		{replay.Stock, false},
		{replay.Wrapped, true},
		{replay.Patched, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.path), func(t *testing.T) {
			t.Parallel()
			o := play(t, replay.Config{Scenario: replay.Incident, Path: tt.path})
			put, remove := call(t, o, "Put(c1)"), call(t, o, "Remove(c1)")
			if put.Err != "" {
				t.Errorf("Put: %s; moby's Put only logs", put.Err)
			}
			if tt.clean {
				checkClean(t, o, put, remove)
			} else {
				checkIncident(t, o, put, remove)
			}
		})
	}
}

// checkIncident: the dockerd debug log and the kubelet error of the
// incident, word for word but for the paths.
func checkIncident(t *testing.T, o replay.Outcome, put, remove replay.Call) {
	t.Helper()
	for _, msg := range []string{
		"Failed to unmount c1 overlay: " + o.Merged + " - invalid argument",
		"Failed to remove c1 overlay: device or resource busy",
	} {
		if !logged(put, "debug", msg) {
			t.Errorf("Put did not log %q; it logged %+v", msg, put.Log)
		}
	}
	if want := "unlinkat " + o.Merged + ": device or resource busy"; remove.Err != want || remove.Errno != "EBUSY" {
		t.Errorf("Remove: %q (%s), want %q (EBUSY)", remove.Err, remove.Errno, want)
	}
	// containerfs.EnsureRemoveAll retries 50 times, 100 ms apart, before it
	// gives up: one EBUSY for Put's rmdir, 51 for Remove's.
	if remove.Took < 5*time.Second {
		t.Errorf("Remove gave up after %v; moby's retry loop takes 5 s", remove.Took)
	}
	if o.Emulator.Busy < 52 {
		t.Errorf("the emulator answered EBUSY %d times, want at least 52", o.Emulator.Busy)
	}
	a := o.After
	if !a.LayerExists || !a.MergedExists || !a.ShimHoldsMerged {
		t.Errorf("after the failed removal: %+v; want the layer, its merged directory and the shim's mount of it left", a)
	}
}

// checkClean: nsdetach detached the shim's copy in namespace A and the
// layer is gone, with nothing left mounted anywhere.
func checkClean(t *testing.T, o replay.Outcome, put, remove replay.Call) {
	t.Helper()
	if remove.Err != "" {
		t.Errorf("Remove: %s", remove.Err)
	}
	if !detachedIn(put, o.Merged, o.Shim.Namespace) {
		t.Errorf("Put did not log detaching %s in the shim's namespace %d; it logged %+v", o.Merged, o.Shim.Namespace, put.Log)
	}
	if o.Config.Path == replay.Wrapped && !logged(put, "debug", "Failed to unmount c1 overlay: "+o.Merged+" - invalid argument") {
		// The wrapper runs moby's Put unchanged first.
		t.Errorf("moby's Put inside the wrapper did not log EINVAL; it logged %+v", put.Log)
	}
	a := o.After
	if a.LayerExists || a.MergedExists || a.ShimHoldsMerged || len(a.Mounts) > 0 {
		t.Errorf("after the removal: %+v; want the layer gone and nothing mounted under %s in any namespace", a, o.DataRoot)
	}
}

// TestForceRemove is the difference between moby 1.13.1 and 18.06
// (docs/incident.md) as a property of the force removal (cleanupContainer) of
// a container whose layer and shm mount live on in namespace A: a force
// removal never leaves the container's root behind (its layer and its
// directory are gone) and never leaks a mount silently (nothing under the
// data root is mounted in any namespace). 1.13.1 breaks both halves and
// forgets the container, so nothing shows it; 18.06 breaks both halves
// too but keeps the container with the error ("Removal In Progress");
// nsdetach's paths keep the property.
func TestForceRemove(t *testing.T) {
	tests := []struct {
		name   string
		path   replay.Path
		policy replay.Policy
		// forgotten: the container left daemon A''s index; kept: the
		// property holds.
		forgotten, kept bool
	}{
		{"moby 1.13.1", replay.Stock, replay.Forget, true, false},
		{"moby 18.06.3-ce", replay.Stock, replay.Keep, false, false},
		{"nsdetach overlay2-nsdetach", replay.Wrapped, replay.Keep, true, true},
		{"nsdetach patch series", replay.Patched, replay.Keep, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := play(t, replay.Config{Scenario: replay.ForceRemove, Path: tt.path, Policy: tt.policy})
			if o.Forgotten != tt.forgotten {
				t.Errorf("container forgotten = %v, want %v (removal error %q)", o.Forgotten, tt.forgotten, o.RemovalError)
			}
			rootLeft, mountsLeft := rootLeft(o), o.After.Mounts
			if tt.kept {
				if len(rootLeft) > 0 || len(mountsLeft) > 0 {
					t.Errorf("force removal left %v behind, and mounts in other namespaces: %v", rootLeft, mountsLeft)
				}
				if o.RemovalError != "" {
					t.Errorf("removal error: %s", o.RemovalError)
				}
				return
			}
			// Stock: both halves broken, whatever the policy.
			if len(rootLeft) != 2 || !o.After.ShimHoldsMerged || !mounted(mountsLeft, o.ContainerDir+"/mounts/shm ") {
				t.Errorf("left behind %v and mounts %v; want the layer and the container directory, the shim holding both mounts", rootLeft, mountsLeft)
			}
			// The failure is the incident's: ReleaseLayer fails with the
			// kubelet's error, and moby returns before the container's
			// root is tried.
			if _, tried := o.Call("EnsureRemoveAll(ctr.Root)"); tried {
				t.Error("the container's root was removed after the layer's release failed; moby returns first")
			}
			want := `driver "overlay2" failed to remove root filesystem: unlinkat ` + o.Merged + ": device or resource busy"
			switch {
			case tt.forgotten && o.RemovalError != "":
				t.Errorf("1.13.1 forgot the container and kept a removal error %q", o.RemovalError)
			case !tt.forgotten && o.RemovalError != want:
				t.Errorf("removal error %q, want %q", o.RemovalError, want)
			}
		})
	}
}

// rootLeft lists what remains of the container's root: its layer and its
// directory.
func rootLeft(o replay.Outcome) []string {
	var left []string
	if o.After.LayerExists {
		left = append(left, o.Layer)
	}
	if o.After.ContainerRootExists {
		left = append(left, o.ContainerDir)
	}
	return left
}

// mounted reports whether a mountinfo line of lines contains s.
func mounted(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
