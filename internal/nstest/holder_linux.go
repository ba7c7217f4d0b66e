package nstest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/moby/sys/mountinfo"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nsdetach/nsdetach/internal/procfs"
	"golang.org/x/sys/unix"
)

// HolderSpec describes a holder process: a process in a mount namespace of
// its own, copied from the test's, like a containerd shim that outlives the
// daemon that started it.
type HolderSpec struct {
	// Tmpfs are directories on which the holder mounts a tmpfs inside its own
	// namespace, after it starts (they exist nowhere else), in order; a
	// missing directory is created first, so a later one may lie inside an
	// earlier tmpfs. Paths are as the holder sees them before any PivotRoot
	// or Chroot.
	Tmpfs []string
	// PivotRoot, when set, is a directory the holder bind-mounts onto itself
	// and pivot_roots into (the old root is detached), like a container.
	PivotRoot string
	// Chroot, when set, is a directory the holder chroots into.
	Chroot string
	// UserNS puts the holder in a new user namespace too (root mapped to
	// root), so every mount it copies is locked.
	UserNS bool
	// PidNS puts the holder in a new pid namespace too, as pid 1 there.
	PidNS bool
	// KeepPropagation makes the holder's namespace a plain copy of the
	// caller's, as systemd's MountFlags=shared does: a mount the caller has
	// shared stays in its peer group (by default every mount is made private).
	// Tmpfs mounts then propagate to the caller's shared mounts.
	KeepPropagation bool
	// Extra is how many more processes (sleep) share the namespace.
	Extra int
	// Comm, when set, is the holder's command name (/proc/PID/comm), for
	// code that looks processes up by name ("dockerd"); Args are the
	// arguments its command line (/proc/PID/cmdline) shows after argv[0].
	// The holder behaves the same whatever they are.
	Comm string   `json:"-"`
	Args []string `json:"-"`
}

// Holder is a running holder process.
type Holder struct {
	PID int
	// Namespace is its mount namespace inode.
	Namespace uint64
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	lines     *bufio.Reader
	done      bool
}

// StartHolder starts a holder and waits until its namespace is set up. It
// stops the holder (and its extra processes) when the test ends.
func StartHolder(t testing.TB, spec HolderSpec) *Holder {
	t.Helper()
	h, err := startHolder(spec)
	if err != nil {
		t.Fatalf("starting holder: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("stopping holder %d: %v", h.PID, err)
		}
	})
	return h
}

// StartHolderNoCleanup starts a holder that lives until Stop or until the
// test binary exits (its stdin closes); for fixtures shared by benchmarks.
func StartHolderNoCleanup(spec HolderSpec) (*Holder, error) { return startHolder(spec) }

func startHolder(spec HolderSpec) (*Holder, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	exe := "/proc/self/exe"
	var linkDir string
	if spec.Comm != "" {
		// The kernel names a process after the file it executes, so a
		// symlink called Comm gives the holder that name.
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if linkDir, err = os.MkdirTemp("", "nstest-comm-"); err != nil {
			return nil, err
		}
		exe = linkDir + "/" + spec.Comm
		if err := os.Symlink(self, exe); err != nil {
			os.RemoveAll(linkDir)
			return nil, err
		}
	}
	cmd := exec.Command(exe, spec.Args...)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	// No Pdeathsig: it fires when the forking *thread* exits, and the code
	// under test ends threads on purpose. The holder exits when its stdin, a
	// pipe from the test process, reaches EOF, which also happens if the test
	// process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if spec.UserNS {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
	} else if spec.KeepPropagation {
		// Go makes "/" private after an unshare (Unshareflags), not after
		// a clone.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS
	} else {
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	}
	if spec.PidNS {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWPID
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	err = cmd.Start()
	if linkDir != "" {
		os.RemoveAll(linkDir) // the running process keeps its name
	}
	if err != nil {
		return nil, err
	}
	h := &Holder{PID: cmd.Process.Pid, cmd: cmd, stdin: stdin, lines: bufio.NewReader(stdout)}
	if err := h.awaitReady(); err != nil {
		h.Stop()
		return nil, err
	}
	ino, err := NamespaceOf(h.PID)
	if err != nil {
		h.Stop()
		return nil, err
	}
	h.Namespace = ino
	return h, nil
}

func (h *Holder) awaitReady() error {
	line, err := h.lines.ReadString('\n')
	if err != nil {
		return fmt.Errorf("holder %d exited before it was ready: %v", h.PID, err)
	}
	if line != "ready\n" {
		return fmt.Errorf("holder %d: %s", h.PID, strings.TrimSpace(line))
	}
	return nil
}

// Remount asks the holder to mount again those of its Tmpfs that are no
// longer mounted (benchmarks reuse holders across iterations).
func (h *Holder) Remount() error {
	if _, err := io.WriteString(h.stdin, "mount\n"); err != nil {
		return err
	}
	return h.awaitReady()
}

// Stop ends the holder and its extra processes and reaps it. Stopping twice
// is harmless.
func (h *Holder) Stop() error {
	if h.done {
		return nil
	}
	h.done = true
	h.stdin.Close()
	err := h.cmd.Wait()
	if _, serr := os.Stat("/proc/" + strconv.Itoa(h.PID)); serr == nil {
		return fmt.Errorf("pid %d still exists after wait", h.PID)
	}
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() != 0 {
		return fmt.Errorf("holder exited with %v", err)
	}
	return nil
}

// NamespaceOf returns pid's mount namespace inode.
func NamespaceOf(pid int) (uint64, error) { return procfs.MountNamespace(pid) }

// runHelper is the holder process: set up the namespace, say "ready", then
// serve "mount" requests until stdin closes.
func runHelper() int {
	var spec HolderSpec
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &spec); err != nil {
		fmt.Printf("bad spec: %v\n", err)
		return 2
	}
	var extras []*exec.Cmd
	defer func() {
		for _, c := range extras {
			c.Process.Kill()
			c.Wait()
		}
	}()
	for i := 0; i < spec.Extra; i++ {
		c := exec.Command("sleep", "infinity")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			fmt.Printf("starting extra process: %v\n", err)
			return 2
		}
		extras = append(extras, c)
	}
	mountAll := func() error {
		for _, d := range spec.Tmpfs {
			if mounted, _ := mountinfo.Mounted(d); mounted {
				continue // a Remount mounts only what was detached
			}
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
			if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=64k"); err != nil {
				return fmt.Errorf("mount tmpfs on %s: %v", d, err)
			}
		}
		return nil
	}
	if err := mountAll(); err != nil {
		fmt.Println(err)
		return 2
	}
	if err := enterRoot(spec); err != nil {
		fmt.Println(err)
		return 2
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "mount" {
			if err := mountAll(); err != nil {
				fmt.Println(err)
				continue
			}
			fmt.Println("ready")
		}
	}
	return 0
}

func enterRoot(spec HolderSpec) error {
	switch {
	case spec.PivotRoot != "":
		d := spec.PivotRoot
		if err := unix.Mount(d, d, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %v", d, err)
		}
		if err := unix.Chdir(d); err != nil {
			return err
		}
		// pivot_root(".", ".") stacks the old root on the new one; detaching
		// "." then drops the old root, as runc does.
		if err := unix.PivotRoot(".", "."); err != nil {
			return fmt.Errorf("pivot_root %s: %v", d, err)
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach old root: %v", err)
		}
		return unix.Chdir("/")
	case spec.Chroot != "":
		if err := unix.Chroot(spec.Chroot); err != nil {
			return fmt.Errorf("chroot %s: %v", spec.Chroot, err)
		}
		return unix.Chdir("/")
	}
	return nil
}
