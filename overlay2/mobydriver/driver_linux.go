package mobydriver

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/docker/docker/daemon/graphdriver"
	mobyoverlay2 "github.com/docker/docker/daemon/graphdriver/overlay2"
	"github.com/moby/locker"
	"github.com/moby/sys/mountinfo"
	"github.com/moby/sys/user"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Name is the storage driver name this package registers.
const Name = "overlay2-nsdetach"

// scanTimeout bounds one scan of the machine's mount namespaces; the driver
// interface has no context, and a scan of a busy machine takes well under a
// second, so this only stops a stuck scan from hanging the daemon.
const scanTimeout = time.Minute

func init() {
	graphdriver.Register(Name, Init)
}

// Init is the graphdriver.InitFunc of Name. graphdriver gives it
// <root>/overlay2-nsdetach; it uses <root>/overlay2, moby's overlay2 home,
// so that the layers stay where the stock driver has them.
func Init(home string, options []string, idMap user.IdentityMapping) (graphdriver.Driver, error) {
	home = filepath.Join(filepath.Dir(home), "overlay2")
	inner, err := mobyoverlay2.Init(home, options, idMap)
	if err != nil {
		return nil, err
	}
	return New(inner, home, nil), nil
}

// Driver is moby's overlay2 driver with namespace-aware Get, Put and
// Remove. Reference counting, mounting and the on-disk layout stay the inner
// driver's: every Get and Put goes to it exactly once, and Driver only acts
// before (Get, Remove) or after (Put) it. What Driver adds never unmounts
// anything in the caller's namespace (it detaches copies in other
// namespaces and removes an unmounted mount point), so the inner driver's
// own Get/Put calls that bypass the wrapper (moby's naive diff, behind
// Diff and Changes) cannot lose a mount to it.
type Driver struct {
	graphdriver.Driver
	home string
	opts []mountns.Option
	log  logrus.FieldLogger
	// locker serializes Get, Put and Remove of one layer, so that what
	// Driver does around the inner call sees the state that call left.
	locker *locker.Locker
	// layers is what Get and Remove found about running containers on the
	// layers, which Put acts on.
	layers overlay2.Layers
}

// New wraps inner, a moby overlay2 driver whose home directory is home.
// Mounts are detached in other namespaces only under home. log receives
// what the driver and mountns do (nil: logrus with
// storage-driver=overlay2-nsdetach); tests pass a Lister in opts.
func New(inner graphdriver.Driver, home string, log logrus.FieldLogger, opts ...mountns.Option) *Driver {
	if log == nil {
		log = logrus.WithField("storage-driver", Name)
	}
	return &Driver{
		Driver: inner,
		home:   home,
		// The root last, so that nothing in opts widens it.
		opts:   append(append([]mountns.Option{mountns.WithLogger(log)}, opts...), mountns.WithRoot(home)),
		log:    log,
		locker: locker.New(),
	}
}

// Status is the inner driver's, plus a line that says the wrapper is on.
func (d *Driver) Status() [][2]string {
	return append(d.Driver.Status(), [2]string{"nsdetach", Name + ": foreign copies of layer mounts are detached"})
}

// Get detaches stale copies of the layer's mount left in other namespaces
// when the layer is not mounted here, then mounts it with the inner driver.
func (d *Driver) Get(id, mountLabel string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	d.locker.Lock(id)
	defer d.locker.Unlock(id)
	d.detachStale(id)
	p, err := d.Driver.Get(id, mountLabel)
	if err != nil && errors.Is(err, os.ErrNotExist) {
		return "", errors.Wrapf(err, "%s: layer %s does not exist under %s (removed, or never created: check the id)", Name, id, d.home)
	}
	return p, err
}

// detachStale handles a layer whose merged directory exists but is not
// mounted here: only a mount made by another namespace leaves that behind
// (a clean Put removes the directory), so that is the one case worth a scan.
// A copy that is a running container's root filesystem cannot be detached;
// mounting again then shares the upper directory with it, which is logged.
func (d *Driver) detachStale(id string) {
	dir := filepath.Join(d.home, id)
	merged := filepath.Join(dir, "merged")
	if _, err := os.Lstat(filepath.Join(dir, "lower")); err != nil {
		return // never mounted as an overlay: Get returns the diff directory
	}
	if _, err := os.Lstat(merged); err != nil {
		return
	}
	if mounted, err := mountinfo.Mounted(merged); err != nil || mounted {
		return // mounted here: the inner driver counts it
	}
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	err := d.layers.DetachLayer(ctx, dir, d.opts...)
	var he *overlay2.HeldError
	switch {
	case err == nil:
	case errors.As(err, &he) && len(he.Live()) > 0:
		for _, ns := range he.Live() {
			d.log.WithFields(logrus.Fields{"layer": id, "namespace": ns.Inode, "pids": ns.PIDs, "commands": ns.Commands}).
				Warn("a running container still uses this layer's old overlay mount as its root filesystem; mounting the layer again shares its upper directory (the kernel logs \"overlayfs: upperdir is in-use\"): restart that container to give it a fresh mount")
		}
	default:
		d.log.WithError(err).WithField("layer", id).Warn("stale copies of the layer's mount remain in other mount namespaces; mounting it anyway")
	}
}

// Put lets the inner driver drop its reference (and, at zero, unmount and
// remove the mount point). When it leaves an unmounted mount point behind,
// rmdir failed: on kernels without detach-on-rmdir another namespace still
// has the mount there, so Put detaches it and removes the mount point.
func (d *Driver) Put(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	d.locker.Lock(id)
	defer d.locker.Unlock(id)
	if err := d.Driver.Put(id); err != nil {
		return err
	}
	merged := filepath.Join(d.home, id, "merged")
	if _, err := os.Lstat(merged); err != nil {
		if os.IsNotExist(err) && d.layers.IsLive(filepath.Dir(merged)) {
			// moby's Put removed the merged directory of a layer a running
			// container still uses (restore after a restart): runc exec needs
			// it as its working directory, so put it back as moby made it.
			return restoreMerged(merged)
		}
		return nil // the fast path: removed, or never made
	}
	if mounted, err := mountinfo.Mounted(merged); err != nil || mounted {
		return nil // still referenced here
	}
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	if err := d.layers.RemoveMountpoint(ctx, merged, d.opts...); err != nil {
		return errors.Wrapf(err, "%s: layer %s", Name, id)
	}
	return nil
}

// Remove detaches the foreign copies of the layer's mounts, then lets the
// inner driver remove it. While a copy remains, in particular while a
// running container uses the layer as its root filesystem, nothing is
// removed and the error says who holds it. A layer that does not exist is
// removed already: nil, as the inner driver answers, which moby's layer
// store relies on when it retries a release.
func (d *Driver) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	d.locker.Lock(id)
	defer d.locker.Unlock(id)
	dir := filepath.Join(d.home, id)
	if _, err := os.Lstat(dir); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
		defer cancel()
		if err := d.layers.DetachLayer(ctx, dir, d.opts...); err != nil {
			return errors.Wrapf(err, "%s: not removing layer %s", Name, id)
		}
	}
	return d.Driver.Remove(id)
}

// checkID refuses ids that are not one path element: the inner driver joins
// them to its home directory unchecked.
func checkID(id string) error {
	if !overlay2.IsLayerID(id) {
		return errors.Errorf("%s: invalid layer id %q: a layer id is a single path element", Name, id)
	}
	return nil
}

// restoreMerged makes an empty merged directory, mode 0700 and owned like
// the layer's diff directory, as moby's Get makes it.
func restoreMerged(merged string) error {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(filepath.Dir(merged), "diff"), &st); err != nil {
		return &os.PathError{Op: "stat", Path: filepath.Join(filepath.Dir(merged), "diff"), Err: err}
	}
	if err := os.Mkdir(merged, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	return os.Lchown(merged, int(st.Uid), int(st.Gid))
}
