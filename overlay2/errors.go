package overlay2

import (
	"fmt"
	"strings"

	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
)

// errNotAbsClean refuses a path that is not absolute and clean.
var errNotAbsClean = errors.New("not an absolute, clean path")

// Op is what a HeldError refused.
type Op string

// Operations of HeldError.Op.
const (
	// OpRmdir: removing a layer's mount point (Unmount, RemoveMountpoint).
	OpRmdir Op = "rmdir"
	// OpRemove: removing a layer (DetachLayer, before its directory goes).
	OpRemove Op = "remove"
)

// HeldError says that a mount point or a layer directory is still held by
// mounts in other mount namespaces, so it was not removed. It names each
// namespace, its processes and commands, and what became of each mount.
// errors.Is finds the kernel's errno (unix.EBUSY, unix.EPERM, ...) through
// it, mountns.ErrLiveContainer when a running container holds it, and
// errors.As the *mountns.DetachError when there is one.
type HeldError struct {
	// Op is what was refused.
	Op Op
	// Path is the mount point or the layer directory.
	Path string
	// Report is the last detach pass over the holders.
	Report mountns.Report
	// Err is why: rmdir's errno, or the detach pass's *mountns.DetachError.
	Err error
	// MountedHere is true when the mount point is also still mounted in
	// the caller's namespace, which this package never unmounts for it.
	MountedHere bool
	// detach is the detach pass's error when Err is rmdir's.
	detach error
}

func (e *HeldError) Error() string {
	var b strings.Builder
	reason := "it is still mounted in other mount namespaces"
	if e.Op == OpRmdir {
		reason = e.Err.Error()
	}
	fmt.Fprintf(&b, "overlay2: cannot %s %s: %s", e.Op, e.Path, reason)
	switch h := e.Report.Holding(); {
	case h != "":
		fmt.Fprintf(&b, "; held in %s", h)
	case e.MountedHere:
		b.WriteString("; it is still mounted in this mount namespace: unmount it here first")
		return b.String()
	default:
		b.WriteString("; no other mount namespace was found holding it")
	}
	if len(e.Live()) > 0 {
		b.WriteString("; a running container uses the layer as its root filesystem: stop that container, then retry")
	} else if e.Report.Root != "" {
		b.WriteString("; stop those processes, then retry")
	}
	return b.String()
}

// Unwrap returns Err and the detach pass's error, if any.
func (e *HeldError) Unwrap() []error { return []error{e.Err, e.detach} }

// Live returns the namespaces whose root directory is a mount of the layer:
// a running container, whose mount is never detached from under it.
func (e *HeldError) Live() []mountns.NamespaceReport {
	return live(e.Report)
}

func live(rep mountns.Report) []mountns.NamespaceReport {
	var out []mountns.NamespaceReport
	for _, ns := range rep.Namespaces {
		for _, m := range ns.Result {
			if m.HolderRoot && !ns.Gone {
				out = append(out, ns)
				break
			}
		}
	}
	return out
}
