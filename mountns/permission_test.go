package mountns_test

import (
	"bufio"
	"context"
	"encoding/json"
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

// TestUnprivilegedCallerGetsAnError: a caller that may not look into other
// processes' namespaces (uid 65534, no capabilities) must get an error that
// names the process and says permission denied, never "nothing held"; and a
// namespace that one of its processes cannot show is read through another
// that can.
func TestUnprivilegedCallerGetsAnError(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["tmpfs mounted only in the holder"](t)
	// A process of the holder's namespace that uid 65534 may inspect.
	visible := exec.Command("nsenter", "-t", strconv.Itoa(f.holder.PID), "-m",
		"-S", strconv.Itoa(nstest.Nobody), "-G", strconv.Itoa(nstest.Nobody), "--", "sh", "-c", "echo ready; exec sleep infinity")
	visible.SysProcAttr = &syscall.SysProcAttr{}
	ready, err := visible.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := visible.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { visible.Process.Kill(); visible.Wait() })
	if line, err := bufio.NewReader(ready).ReadString('\n'); line != "ready\n" {
		t.Fatalf("nsenter: %q, %v", line, err)
	}

	ns := func(pids ...int) string {
		s := make([]string, len(pids))
		for i, p := range pids {
			s[i] = strconv.Itoa(p)
		}
		return fmt.Sprintf("%s=%d:%s", namespaceEnv, f.holder.Namespace, strings.Join(s, ","))
	}
	cases := []struct {
		name string
		env  []string
		want []string
	}{
		{"every namespace of the machine", nil,
			[]string{"holders=0 permission=true", "pid ", "permission denied"}},
		{"the holder's namespace through its root-owned process", []string{ns(f.holder.PID)},
			[]string{"holders=0 permission=true", fmt.Sprintf("pid %d", f.holder.PID), "permission denied"}},
		{"the holder's namespace, through the one process that can show it", []string{ns(f.holder.PID, visible.Process.Pid)},
			[]string{"holders=1 permission=false err=<nil>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := nstest.CommandAsNobody(t, append(c.env, holdersEnv+"="+f.target)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestUnprivilegedDetachIsNotGone: holders found by root, detached by a
// caller that may not open their namespaces, must be reported as an error
// naming the process, never as gone (which is success).
func TestUnprivilegedDetachIsNotGone(t *testing.T) {
	nstest.RequireRoot(t)
	f := fixtures["tmpfs mounted only in the holder"](t)
	if err := os.Chmod(filepath.Dir(f.root), 0o755); err != nil {
		t.Fatal(err) // the caller must reach the root to be refused further on
	}
	holders, err := mountns.FindHolders(context.Background(), f.target)
	if err != nil || len(holders) != 1 {
		t.Fatalf("scan as root: %+v, %v", holders, err)
	}
	b, err := json.Marshal(holders)
	if err != nil {
		t.Fatal(err)
	}
	cmd := nstest.CommandAsNobody(t, detachHoldersEnv+"="+f.target+" "+f.root, heldEnv+"="+string(b))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, w := range []string{"gone=0 remaining=1 permission=true", fmt.Sprintf("pid %d", f.holder.PID), "permission denied"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if !mountedInHolder(f.holder, f.view) {
		t.Error("the mount was detached by an unprivileged caller")
	}
}
