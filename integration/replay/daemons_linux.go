package replay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/docker/docker/daemon/graphdriver"
	mobyoverlay2 "github.com/docker/docker/daemon/graphdriver/overlay2"
	"github.com/moby/sys/user"
	"github.com/nsdetach/nsdetach/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/nsdetach/nsdetach/overlay2/mobydriver"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// startedA is daemon A's report.
type startedA struct {
	Daemon, Shim Process
}

// daemonA mounts the container's layer with moby's overlay2 driver (and,
// for a force removal, the container's shm), starts the shim and exits
// without unmounting: the daemon is restarted, live-restore keeps the shim.
func daemonA(cfg Config) (any, error) {
	l := layoutOf(cfg)
	if err := os.MkdirAll(l.dataRoot, 0o711); err != nil {
		return nil, err
	}
	d, err := mobyoverlay2.Init(l.home, nil, user.IdentityMapping{})
	if err != nil {
		return nil, fmt.Errorf("moby's overlay2 does not run here: %w", err)
	}
	if err := d.Create(baseID, "", nil); err != nil {
		return nil, err
	}
	if err := d.CreateReadWrite(layerID, baseID, nil); err != nil {
		return nil, err
	}
	if _, err := d.Get(layerID, ""); err != nil {
		return nil, err
	}
	if cfg.Scenario == ForceRemove {
		// daemon/container_operations_unix.go setupIpcDirs: a tmpfs on
		// <container root>/mounts/shm.
		if err := os.MkdirAll(l.shm, 0o700); err != nil {
			return nil, err
		}
		if err := unix.Mount("shm", l.shm, "tmpfs", unix.MS_NOEXEC|unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=65536k"); err != nil {
			return nil, fmt.Errorf("mount shm: %w", err)
		}
	}
	me, err := thisProcess()
	if err != nil {
		return nil, err
	}
	sh, err := startShim()
	if err != nil {
		return nil, err
	}
	return startedA{Daemon: me, Shim: sh}, nil
}

// startShim starts the shim in this namespace, named containerd-shim (the
// kernel names a process after the file it executes: a symlink to this
// binary), with this process's stdin, and waits until it runs.
func startShim() (Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return Process{}, err
	}
	dir, err := os.MkdirTemp("", "nsdetach-replay-shim-")
	if err != nil {
		return Process{}, err
	}
	defer os.RemoveAll(dir) // the running shim keeps its name
	link := filepath.Join(dir, shimComm)
	if err := os.Symlink(exe, link); err != nil {
		return Process{}, err
	}
	cmd := exec.Command(link, "-namespace", "moby", "-id", container)
	cmd.Env = append(os.Environ(), roleEnv+"=shim", configEnv+"="+os.Getenv(configEnv))
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	ready, err := cmd.StdoutPipe()
	if err != nil {
		return Process{}, err
	}
	if err := cmd.Start(); err != nil {
		return Process{}, err
	}
	line, err := bufio.NewReader(ready).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		return Process{}, fmt.Errorf("shim did not start: %q %v", line, err)
	}
	ns, err := nstest.NamespaceOf(cmd.Process.Pid)
	return Process{PID: cmd.Process.Pid, Namespace: ns}, err
}

// shim keeps namespace A alive until its stdin reaches EOF.
func shim(Config) (any, error) {
	fmt.Println("ready")
	os.Stdout.Close()
	_, err := io.Copy(io.Discard, os.Stdin)
	return nil, err
}

// resultA2 is daemon A”s report.
type resultA2 struct {
	Daemon       Process
	Calls        []Call
	Forgotten    bool
	RemovalError string
}

// daemonA2 is the restarted daemon: same data root, new namespace, no
// reference to the layer. It runs cfg.Path's removal.
func daemonA2(cfg Config) (any, error) {
	l := layoutOf(cfg)
	me, err := thisProcess()
	if err != nil {
		return nil, err
	}
	// moby logs through containerd/log, which is logrus's standard logger;
	// so does everything else here.
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.DebugLevel)
	hook := logtest.NewGlobal()
	log := logrus.WithField("storage-driver", "overlay2")

	inner, err := mobyoverlay2.Init(l.home, nil, user.IdentityMapping{})
	if err != nil {
		return nil, fmt.Errorf("moby's overlay2 does not run here: %w", err)
	}
	var d graphdriver.Driver
	var removeRoot func(dir string) error
	switch cfg.Path {
	case Stock:
		d, removeRoot = inner, stockEnsureRemoveAll
	case Wrapped:
		d, removeRoot = mobydriver.New(inner, l.home, logrus.WithField("storage-driver", mobydriver.Name)), ensureRemoveAll
	case Patched:
		d, removeRoot = patched{Driver: inner, home: l.home, log: log, layers: new(overlay2.Layers)}, ensureRemoveAll
	default:
		return nil, fmt.Errorf("unknown path %q", cfg.Path)
	}

	r := resultA2{Daemon: me}
	call := func(op string, f func() error) error {
		hook.Reset()
		start := time.Now()
		err := f()
		c := Call{Op: op, Took: time.Since(start), Log: lines(hook.AllEntries())}
		if err != nil {
			c.Err = err.Error()
			var errno unix.Errno
			if errors.As(err, &errno) {
				c.Errno = unix.ErrnoName(errno)
			}
		}
		r.Calls = append(r.Calls, c)
		return err
	}
	put := func() error { return d.Put(layerID) }
	remove := func() error { return d.Remove(layerID) }

	switch cfg.Scenario {
	case Incident:
		call("Put("+layerID+")", put)
		call("Remove("+layerID+")", remove)
	case ForceRemove:
		err := cleanupContainer(call, put, remove, func() error { return removeRoot(l.ctrDir) })
		switch {
		case err == nil:
			r.Forgotten = true
		case cfg.Policy == Forget:
			// 1.13.1's deferred clean-up: with forceRemove the container
			// leaves the indexes whatever the error.
			r.Forgotten = true
		default:
			// container.SetRemovalError: the container stays.
			r.RemovalError = err.Error()
		}
	default:
		return nil, fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	return r, nil
}

// ensureRemoveAll is the container root's removal of the patch series'
// cleanupContainer.
func ensureRemoveAll(dir string) error {
	return daemon.EnsureRemoveAll(context.TODO(), dir, mountns.WithLogger(logrus.WithField("container", container)))
}

// cleanupContainer is a force removal by daemon A' as far as files go:
// the layer's Put (the unmount of the stopped container's layer, which
// daemon A' never mounted), then what moby's daemon/delete.go
// cleanupContainer does, in its order: ImageService.ReleaseLayer (the
// layer store's release ends in the driver's Remove), and only when that
// succeeded, EnsureRemoveAll(ctr.Root).
func cleanupContainer(call func(string, func() error) error, put, remove, removeRoot func() error) error {
	if err := call("Put("+layerID+")", put); err != nil {
		return err
	}
	if err := call("Remove("+layerID+")", remove); err != nil {
		// ImageService.ReleaseLayer's wording, the one kubelet showed.
		return fmt.Errorf("driver %q failed to remove root filesystem: %w", "overlay2", err)
	}
	if err := call("EnsureRemoveAll(ctr.Root)", removeRoot); err != nil {
		return fmt.Errorf("unable to remove filesystem for %s: %w", container, err)
	}
	return nil
}

// patched is moby's overlay2 with the patch series' call sites: Put's body
// (once the reference count is zero, which it is for a daemon that never
// took one) is the driver's overlay2.Layers.Unmount, and Remove's containerfs.EnsureRemoveAll is
// daemon.EnsureRemoveAll.
type patched struct {
	graphdriver.Driver
	home   string
	log    logrus.FieldLogger
	layers *overlay2.Layers // the patched Driver's field
}

func (d patched) Put(id string) error {
	mountpoint := filepath.Join(d.home, id, "merged")
	if err := d.layers.Unmount(context.TODO(), mountpoint, mountns.WithRoot(d.home), mountns.WithLogger(d.log)); err != nil {
		d.log.Warnf("Failed to unmount %s overlay: %s - %v", id, mountpoint, err)
	}
	return nil
}

func (d patched) Remove(id string) error {
	dir := filepath.Join(d.home, id)
	if lid, err := os.ReadFile(filepath.Join(dir, "link")); err == nil && len(lid) > 0 {
		if err := os.RemoveAll(filepath.Join(d.home, "l", string(lid))); err != nil {
			d.log.Debugf("Failed to remove link: %v", err)
		}
	}
	if err := daemon.EnsureRemoveAll(context.TODO(), dir, mountns.WithLogger(d.log)); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func lines(entries []*logrus.Entry) []LogLine {
	var out []LogLine
	for _, e := range entries {
		ll := LogLine{Level: e.Level.String(), Message: e.Message}
		if len(e.Data) > 0 {
			ll.Fields = map[string]string{}
			for k, v := range e.Data {
				ll.Fields[k] = fmt.Sprint(v)
			}
		}
		out = append(out, ll)
	}
	return out
}
