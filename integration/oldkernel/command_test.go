package oldkernel

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCommand runs the command-line tool: exit status, an EBUSY from a
// held mount point, and SIGTERM sent to oldkernel reaching the command.
func TestCommand(t *testing.T) {
	requireRoot(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build cmd/oldkernel")
	}
	bin := filepath.Join(t.TempDir(), "oldkernel")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/oldkernel")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	base := t.TempDir()
	foreignMountPoint(t, base+"/m")

	t.Run("exit status and EBUSY", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--", self, "rmdir:"+base+"/m", "exit:3")
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("exit: %v, want status 3", err)
		}
		if string(out) != "EBUSY\n" {
			t.Errorf("output %q, want EBUSY", out)
		}
	})
	t.Run("SIGTERM is forwarded", func(t *testing.T) {
		// The helper is the test binary itself.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--", self, "pause")
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			t.Fatalf("helper said %q, %v", line, err)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+int(syscall.SIGTERM) {
			t.Errorf("exit: %v, want status %d", err, 128+int(syscall.SIGTERM))
		}
	})
}
