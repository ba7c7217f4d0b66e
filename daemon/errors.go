package daemon

import (
	"fmt"

	"github.com/nsdetach/nsdetach/mountns"
)

// BusyError says that dir could not be removed because Path, at or below
// it, is still a mount point: in other mount namespaces, which Report names
// with their processes and commands, or here. errors.Is finds EBUSY and the
// detach pass's errors (a *mountns.DetachError) through it.
type BusyError struct {
	// Dir is the directory being removed.
	Dir string
	// Path is the busy mount point.
	Path string
	// Report is the detach pass made for Path, if one was made.
	Report mountns.Report
	// Err is the removal's error (EBUSY).
	Err error
	// cause is why freeing Path failed, if it did.
	cause error
}

func (e *BusyError) Error() string {
	var why string
	switch {
	case e.cause != nil:
		why = e.cause.Error()
	case e.Report.Local == mountns.LocalUnmounted:
		why = "still busy after it was unmounted here (mounted again meanwhile?)"
	case len(e.Report.Namespaces) > 0:
		why = fmt.Sprintf("still busy after it was detached in %d other mount namespaces", len(e.Report.Namespaces))
	default:
		why = "no other mount namespace was found holding it"
	}
	return fmt.Sprintf("daemon: cannot remove %s: %s: %s; stop the processes that hold it, then retry the removal",
		e.Dir, e.Err, why)
}

// Unwrap returns the removal's error and why freeing the path failed.
func (e *BusyError) Unwrap() []error { return []error{e.Err, e.cause} }
