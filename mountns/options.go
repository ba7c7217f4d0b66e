package mountns

import (
	"os"

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
	// listmount lets the scan read a namespace without processes with
	// listmount/statmount where the kernel has them; tests turn it off to
	// compare with the way of older kernels (entering it).
	listmount bool
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

// WithLister replaces how namespaces are enumerated. Tests use it to count or
// forbid scans; production code keeps the default SystemLister.
func WithLister(l Lister) Option { return func(c *config) { c.lister = l } }

// WithParallelism bounds how many namespaces are read or entered at once
// (default 8).
func WithParallelism(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxWorkers = n
		}
	}
}
