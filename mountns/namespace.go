package mountns

import (
	"context"
	stderrors "errors"
	"runtime"

	"github.com/pkg/errors"
)

// ErrNotSupported is what every call of this module returns on platforms
// without mount namespaces (all but Linux), where it compiles so that moby
// builds everywhere with the patch series applied. errors.Is finds
// errors.ErrUnsupported through it.
var ErrNotSupported = errors.WithMessagef(stderrors.ErrUnsupported, "nsdetach: mount namespaces are not supported on %s", runtime.GOOS)

// Namespace is one mount namespace of the machine.
type Namespace struct {
	// Inode is the nsfs inode number, as `ls -l /proc/PID/ns/mnt` shows it
	// ("mnt:[Inode]"); it names the namespace for as long as it lives.
	Inode uint64 `json:"namespace"`
	// ID is the kernel's 64-bit mount namespace id, which unlike the inode
	// is never reused; from the nsfs walk, 0 on kernels without it. When set,
	// the detach path checks it before entering, so a namespace that died and
	// whose inode number went to a new one is not entered by mistake.
	ID uint64 `json:"ns_id,omitempty"`
	// PIDs are the processes (thread-group leaders) in the namespace, from
	// /proc/*/ns/mnt, ascending. Empty for a namespace that no process holds
	// (pinned by a bind-mounted nsfs file or an open fd), or whose processes
	// the caller may not inspect, which only the nsfs walk finds.
	PIDs []int `json:"pids"`
}

// Lister enumerates the machine's mount namespaces.
type Lister interface {
	List(ctx context.Context) ([]Namespace, error)
}

// SystemLister is the default Lister: the nsfs walk where the kernel has it,
// merged with /proc/*/ns/mnt, which names each namespace's processes.
type SystemLister struct{}
