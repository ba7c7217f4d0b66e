package layer

import (
	"fmt"
	"syscall"

	"github.com/pkg/errors"
)

// IsBusy reports whether err says that a directory is busy (EBUSY): a
// mount point under it is still mounted, here or in another namespace.
//
// syscall's EBUSY is unix.EBUSY on Linux and exists on every platform, so
// IsBusy is the same everywhere.
func IsBusy(err error) bool { return errors.Is(err, syscall.EBUSY) }

// ReleaseError says that a layer's release failed and why; the layer is
// still referenced and can be released again.
type ReleaseError struct {
	// ID is the layer's driver id.
	ID string
	// Err is the release's error.
	Err error
	// Detach is why its foreign copies could not be detached, if that is
	// why the release was not retried.
	Detach error
}

func (e *ReleaseError) Error() string {
	if e.Detach != nil {
		return fmt.Sprintf("layer %s: not released: %v: %v; the layer is still referenced and can be released again", e.ID, e.Err, e.Detach)
	}
	return fmt.Sprintf("layer %s: not released after its foreign mounts were detached: %v; the layer is still referenced and can be released again", e.ID, e.Err)
}

// Unwrap returns the release's error and the detach error.
func (e *ReleaseError) Unwrap() []error { return []error{e.Err, e.Detach} }
