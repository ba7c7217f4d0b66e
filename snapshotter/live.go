package snapshotter

import (
	"sync"

	"github.com/nsdetach/nsdetach/mountns"
)

// Mountpoints is what one mounter remembers about its rootfs mount points
// between calls: the mount points on which DetachStale found a running
// container (one restored with live-restore), with the namespaces and
// processes it saw there. Unmount keeps such a mount point's directory while
// that container runs: runc exec runs in it.
//
// The mounter holds one for its lifetime (a field of moby's
// refCountMounter with the patch series); the zero value is ready to use. A
// nil *Mountpoints remembers nothing.
type Mountpoints struct {
	live sync.Map // mount point -> []mountns.Namespace
}

// setLive records the namespaces of the running containers that DetachStale
// found on target (none: target is forgotten).
func (m *Mountpoints) setLive(target string, users []mountns.Namespace) {
	switch {
	case m == nil:
	case len(users) > 0:
		m.live.Store(target, users)
	default:
		m.live.Delete(target)
	}
}
