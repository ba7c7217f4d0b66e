package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nsdetach/nsdetach/integration/oldkernel"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"golang.org/x/sys/unix"
)

// Scenario is what daemon A' does to the container daemon A started.
type Scenario string

const (
	// Incident: the storage driver's Put of the container layer (the
	// reference daemon A' never took is dropped), then Remove.
	Incident Scenario = "incident"
	// ForceRemove: a force removal (docker rm -f) of the container: the
	// layer's Put (its unmount), then what cleanupContainer removes, in
	// moby's daemon/delete.go order: the layer (ImageService.ReleaseLayer,
	// which ends in the driver's Remove), then the container's root
	// directory, which holds its shm mount.
	ForceRemove Scenario = "force-remove"
)

// Path is the code daemon A' removes with.
type Path string

const (
	// Stock is moby v28.5.2 as released: overlay2's Put and Remove, and
	// containerfs.EnsureRemoveAll for the container's root.
	Stock Path = "moby"
	// Wrapped is overlay2/mobydriver ("overlay2-nsdetach") around moby's
	// overlay2, and daemon.EnsureRemoveAll for the container's root.
	Wrapped Path = "overlay2-nsdetach"
	// Patched is what the patch series puts at moby's call sites:
	// overlay2.Unmount as the body of Put, daemon.EnsureRemoveAll in Remove
	// and for the container's root.
	Patched Path = "patch-series"
)

// Policy is what daemon A' does with a force removal that failed
// ([ForceRemove] only).
type Policy string

const (
	// Forget is moby 1.13.1: a force removal drops the container from the
	// daemon's indexes whatever happened; the error is returned once.
	Forget Policy = "1.13.1"
	// Keep is moby 18.06 and later (moby PR 31012): the container stays,
	// marked with the removal error ("Removal In Progress").
	Keep Policy = "18.06"
)

// Config is one replay.
type Config struct {
	Scenario Scenario
	Path     Path
	Policy   Policy `json:",omitempty"`
	// Dir is an empty directory; the data root is Dir/docker. Play leaves
	// Dir's contents to the caller (a failed removal leaves them).
	Dir string
}

// Process is one process of the replay.
type Process struct {
	PID int
	// Namespace is its mount namespace inode.
	Namespace uint64
}

// LogLine is one line a daemon logged through logrus (moby's overlay2, the
// wrapper, mountns).
type LogLine struct {
	Level   string
	Message string
	Fields  map[string]string `json:",omitempty"`
}

// Call is one step of daemon A'.
type Call struct {
	// Op names the call ("Put(c1)").
	Op string
	// Err is its error, as a person reads it; Errno the errno inside it
	// ("EBUSY"), if any.
	Err, Errno string `json:",omitempty"`
	Took       time.Duration
	// Log is what was logged during the call.
	Log []LogLine `json:",omitempty"`
}

// State is what remains after daemon A' is done, before the shim stops.
type State struct {
	LayerExists, MergedExists, ContainerRootExists bool
	// ShimHoldsMerged says whether the layer's merged directory is still
	// a mount point in the shim's namespace.
	ShimHoldsMerged bool
	// ShimAlive: removing the layer must not stop the container.
	ShimAlive bool
	// Mounts are the mountinfo lines, in any namespace, that name a path
	// under the data root ("PID: line").
	Mounts []string `json:",omitempty"`
}

// Outcome is what one replay observed.
type Outcome struct {
	Config                                Config
	DataRoot, Layer, Merged, ContainerDir string
	DaemonA, Shim, DaemonA2               Process
	// Calls are daemon A''s steps, in order.
	Calls []Call
	// Forgotten ([ForceRemove]): the container is gone from daemon A''s
	// index; RemovalError is the error kept with it otherwise.
	Forgotten    bool
	RemovalError string `json:",omitempty"`
	After        State
	// Emulator is what the old-kernel emulator answered.
	Emulator oldkernel.Stats
}

// Call returns the call named op, and whether there was one.
func (o Outcome) Call(op string) (Call, bool) {
	for _, c := range o.Calls {
		if c.Op == op {
			return c, true
		}
	}
	return Call{}, false
}

// Layer and container names, and the shim's command name.
const (
	layerID   = "c1"
	baseID    = "base"
	container = "c1"
	shimComm  = "containerd-shim"
)

// Environment of the re-executed roles.
const (
	roleEnv   = "NSDETACH_REPLAY_ROLE"
	configEnv = "NSDETACH_REPLAY_CONFIG"
)

// Play runs one replay in a child process under the old-kernel emulator and
// returns what it observed. When it returns, every process of the replay
// has exited (the emulator answers until the last one does) and, whatever
// the path, nothing of the replay is mounted any more: the shim's exit ends
// namespace A. The binary must call oldkernel.Init and [Init] first thing.
// stderr receives the roles' own diagnostics (nil: discarded).
func Play(ctx context.Context, cfg Config, stderr io.Writer) (Outcome, error) {
	if os.Geteuid() != 0 {
		return Outcome{}, errors.New("replay: needs root (mount namespaces, overlay mounts, seccomp)")
	}
	if !filepath.IsAbs(cfg.Dir) {
		return Outcome{}, fmt.Errorf("replay: %q is not an absolute directory", cfg.Dir)
	}
	self, err := os.Executable()
	if err != nil {
		return Outcome{}, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return Outcome{}, err
	}
	var out bytes.Buffer
	res, err := oldkernel.Run(ctx, oldkernel.Config{
		Args:   []string{self},
		Env:    append(os.Environ(), roleEnv+"=node", configEnv+"="+string(b)),
		Dir:    "/",
		Stdout: &out,
		Stderr: stderr,
	})
	if err != nil {
		return Outcome{}, err
	}
	if res.ExitCode != 0 {
		return Outcome{}, fmt.Errorf("replay: node exited with status %d", res.ExitCode)
	}
	var o Outcome
	if err := json.Unmarshal(out.Bytes(), &o); err != nil {
		return Outcome{}, fmt.Errorf("replay: node's report: %w (%q)", err, out.String())
	}
	o.Emulator = res.Stats
	return o, nil
}

// Init takes over when the process is one of the replay's roles (the node,
// daemon A, the shim, daemon A') and exits when the role is done; otherwise
// it returns at once. Call it right after oldkernel.Init.
func Init() {
	role, ok := os.LookupEnv(roleEnv)
	if !ok {
		return
	}
	var cfg Config
	if err := json.Unmarshal([]byte(os.Getenv(configEnv)), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "replay %s: bad config: %v\n", role, err)
		os.Exit(2)
	}
	var run func(Config) (any, error)
	switch role {
	case "node":
		run = node
	case "daemon-a":
		run = daemonA
	case "daemon-a2":
		run = daemonA2
	case "shim":
		run = shim
	default:
		fmt.Fprintf(os.Stderr, "replay: unknown role %q\n", role)
		os.Exit(2)
	}
	v, err := run(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "replay %s: %v\n", role, err)
		os.Exit(1)
	}
	if v != nil {
		if err := json.NewEncoder(os.Stdout).Encode(v); err != nil {
			os.Exit(1)
		}
	}
	os.Exit(0)
}

// layout is where things are under cfg.Dir.
type layout struct {
	dataRoot, home, layer, merged, ctrDir, shm string
}

func layoutOf(cfg Config) layout {
	root := filepath.Join(cfg.Dir, "docker")
	home := filepath.Join(root, "overlay2")
	ctr := filepath.Join(root, "containers", container)
	return layout{
		dataRoot: root,
		home:     home,
		layer:    filepath.Join(home, layerID),
		merged:   filepath.Join(home, layerID, "merged"),
		ctrDir:   ctr,
		shm:      filepath.Join(ctr, "mounts", "shm"),
	}
}

// node is the machine: it starts daemon A, lets it die, starts daemon A',
// records what remains and stops the shim.
func node(cfg Config) (any, error) {
	// The shim outlives daemon A, its parent: it becomes our child, so we
	// can stop and reap it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("subreaper: %w", err)
	}
	l := layoutOf(cfg)
	o := Outcome{Config: cfg, DataRoot: l.dataRoot, Layer: l.layer, Merged: l.merged}
	if cfg.Scenario == ForceRemove {
		o.ContainerDir = l.ctrDir
	}

	// The shim's stdin: it runs until we close shimIn.
	shimOut, shimIn, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer shimIn.Close()
	var a startedA
	if err := runRole("daemon-a", cfg, shimOut, &a); err != nil {
		shimOut.Close()
		return nil, err
	}
	shimOut.Close()
	o.DaemonA, o.Shim = a.Daemon, a.Shim
	stopped := false
	stopShim := func() error {
		if stopped {
			return nil
		}
		stopped = true
		shimIn.Close()
		var ws unix.WaitStatus
		if _, err := unix.Wait4(o.Shim.PID, &ws, 0, nil); err != nil {
			return fmt.Errorf("reaping the shim: %w", err)
		}
		return nil
	}
	defer stopShim()

	var a2 resultA2
	if err := runRole("daemon-a2", cfg, nil, &a2); err != nil {
		return nil, err
	}
	o.DaemonA2, o.Calls, o.Forgotten, o.RemovalError = a2.Daemon, a2.Calls, a2.Forgotten, a2.RemovalError

	o.After = State{
		LayerExists:         exists(l.layer),
		MergedExists:        exists(l.merged),
		ContainerRootExists: exists(l.ctrDir),
		ShimHoldsMerged:     nstest.IsMountedIn(o.Shim.PID, l.merged),
		ShimAlive:           unix.Kill(o.Shim.PID, 0) == nil,
		Mounts:              nstest.MountsUnder(l.dataRoot),
	}
	if err := stopShim(); err != nil {
		return nil, err
	}
	return o, nil
}

// runRole runs this binary as role in a new mount namespace (a daemon start
// under MountFlags=slave) and decodes the JSON it prints into v.
func runRole(role string, cfg Config, stdin *os.File, v any) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(cfg)
	var out bytes.Buffer
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), roleEnv+"="+role, configEnv+"="+string(b))
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", role, err)
	}
	if err := json.Unmarshal(out.Bytes(), v); err != nil {
		return fmt.Errorf("%s's report: %w (%q)", role, err, out.String())
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func thisProcess() (Process, error) {
	ns, err := nstest.NamespaceOf(os.Getpid())
	return Process{PID: os.Getpid(), Namespace: ns}, err
}
