package mountns

import (
	"io/fs"
	"strconv"

	"github.com/pkg/errors"
)

// Sentinels for the cases callers tell apart; errors.Is finds them through
// the errors of this module (and of overlay2, daemon, layer, snapshotter).
var (
	// ErrOutsideRoot: a path is not under the root given with WithRoot, so
	// nothing was done to it (an *OutsideRootError says which root).
	ErrOutsideRoot = errors.New("outside the allowed root")
	// ErrLiveContainer: a mount is a running container's root filesystem,
	// or lies in a namespace whose root is under the allowed root, so it is
	// never detached from under that container.
	ErrLiveContainer = errors.New("held by a running container")
	// ErrNotPermitted: the caller may not read or enter a namespace (EPERM,
	// EACCES). It is fs.ErrPermission, which errors.Is matches to those
	// errnos; it is never taken for "nothing held".
	ErrNotPermitted = fs.ErrPermission
)

// PathError records a path given to this package that it does not act on,
// or an operation on such a path that failed: the operation or the
// argument, the path as given, and the cause, which errors.Is and errors.As
// find through it (fs.ErrNotExist for a root that does not exist).
type PathError struct {
	// Op is the operation or the argument checked ("root", "mount point").
	Op string
	// Path is the path as given.
	Path string
	// Err is the cause.
	Err error
}

func (e *PathError) Error() string {
	return "mountns: " + e.Op + " " + strconv.Quote(e.Path) + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *PathError) Unwrap() error { return e.Err }

// OutsideRootError refuses a mount point that is not under the allowed root;
// nothing is touched. errors.Is(err, ErrOutsideRoot) finds it.
type OutsideRootError struct {
	// Path is the mount point as given.
	Path string
	// Root is the allowed root as given.
	Root string
}

func (e *OutsideRootError) Error() string {
	return "mountns: refusing to detach " + e.Path + ": it is outside the allowed root " + e.Root
}

// Unwrap returns ErrOutsideRoot.
func (e *OutsideRootError) Unwrap() error { return ErrOutsideRoot }
