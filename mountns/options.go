package mountns

import (
	"os"
	"syscall"

	"github.com/sirupsen/logrus"
)

// Option configures FindHolders, DetachHolders, DetachAll and Unmount.
type Option func(*config)

type config struct {
	root       string
	logger     logrus.FieldLogger
	dryRun     bool
	callerPID  int
	lister     Lister
	maxWorkers int
	upperDirOf func(target string) string
	remover    Remover
	// listmount lets the scan read a namespace without processes with
	// listmount/statmount where the kernel has them; tests turn it off to
	// compare with the way of older kernels (entering it).
	listmount bool

	// Seams for tests (export_test.go), zero in production: legacyResolve
	// makes the resolver take the path of kernels older than 5.8 where the
	// new calls exist, so tests cover both; umount2 replaces unix.Unmount on
	// the detach path and rereadErr fails its re-read of a namespace's
	// table, to force a race with another cleaner or a failed re-read at an
	// exact point.
	legacyResolve bool
	umount2       func(name string, flags int) error
	rereadErr     error
}

func newConfig(opts []Option) *config {
	c := &config{
		logger:     logrus.StandardLogger(),
		callerPID:  os.Getpid(),
		maxWorkers: 8,
		listmount:  true,
	}
	for _, o := range opts {
		o(c)
	}
	if c.lister == nil {
		c.lister = SystemLister{}
	}
	if c.remover == nil {
		c.remover = SystemRemover{}
	}
	return c
}

// WithRoot sets the directory under which mounts may be detached (the daemon's
// data root). Detaching anything needs it; a mount point outside it is refused.
func WithRoot(dir string) Option { return func(c *config) { c.root = dir } }

// WithLogger sets where actions are logged; the default is logrus's standard
// logger. Callers usually pass an entry with their own fields
// (storage-driver=overlay2).
func WithLogger(l logrus.FieldLogger) Option { return func(c *config) { c.logger = l } }

// WithDryRun makes the detach path resolve and verify every target but unmount
// nothing; the report says "would-detach".
func WithDryRun(on bool) Option { return func(c *config) { c.dryRun = on } }

// WithCaller makes pid's mount namespace count as the caller's: it is never a
// holder, and paths are read as that process sees them. The default is this
// process.
func WithCaller(pid int) Option { return func(c *config) { c.callerPID = pid } }

// WithUpperDirOf tells where a storage layout keeps a target's overlay
// upper directory: f returns it for a target that has one, else "".
// Overlays with that upper directory then match the target wherever they
// are mounted (a container's root, a bind mount elsewhere), also in a
// namespace where nothing at the target's path shows it. Package overlay2
// sets it for moby's layout (a layer's merged directory and its diff
// directory beside it, overlay2.Layout); without it, only the upper
// directories of overlays found at the target itself are followed.
func WithUpperDirOf(f func(target string) string) Option {
	return func(c *config) { c.upperDirOf = f }
}

// WithLister replaces how namespaces are enumerated. Tests use it to count or
// forbid scans; production code keeps the default SystemLister.
func WithLister(l Lister) Option { return func(c *config) { c.lister = l } }

// Remover removes what a detach freed: overlay2 removes a layer's mount
// point with Rmdir, daemon a directory tree with RemoveAll. Its answers are
// the kernel's: on one without detach-on-rmdir, EBUSY while any namespace
// has the directory as a mount point. Tests give it such a kernel's answers
// on this one (WithRemover); production code keeps SystemRemover.
type Remover interface {
	Rmdir(dir string) error
	RemoveAll(dir string) error
}

// SystemRemover is this kernel's rmdir(2) and os.RemoveAll.
type SystemRemover struct{}

// Rmdir is rmdir(2); the error is its errno.
func (SystemRemover) Rmdir(dir string) error { return syscall.Rmdir(dir) }

// RemoveAll is os.RemoveAll.
func (SystemRemover) RemoveAll(dir string) error { return os.RemoveAll(dir) }

// WithRemover replaces how the callers of this package remove what a detach
// freed (see Remover); tests only.
func WithRemover(r Remover) Option { return func(c *config) { c.remover = r } }

// RemoverOf returns the Remover that opts set, SystemRemover by default:
// overlay2 and daemon take their removals from it.
func RemoverOf(opts ...Option) Remover { return newConfig(opts).remover }
