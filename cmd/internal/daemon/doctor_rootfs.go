package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/mountns"
)

// The containerd image store (Engine 29's default) mounts a container's
// rootfs at <root>/rootfs/<snapshotter>/<container id> in dockerd's namespace
// for as long as the container runs (daemon/snapshotter's refCountMounter),
// and again after a restart for the containers it restores. A copy of that
// mount in another namespace belongs to a live container while the engine has
// the same place mounted, and to a stopped or removed one when it has not.

// rootfsOf names the container whose snapshotter rootfs m is, by its place
// <root>/rootfs/<snapshotter>/<id>; empty strings for any other mount.
func rootfsOf(root string, m mountns.Mount) (snapshotter, id string) {
	return rootfsPath(root, m.HostPath)
}

// rootfsPath splits <root>/rootfs/<snapshotter>/<id> into its two names.
func rootfsPath(root, p string) (snapshotter, id string) {
	rest, ok := strings.CutPrefix(p, filepath.Join(root, "rootfs")+"/")
	if !ok {
		return "", ""
	}
	snapshotter, id, ok = strings.Cut(rest, "/")
	if !ok || snapshotter == "" || id == "" || strings.Contains(id, "/") {
		return "", ""
	}
	return snapshotter, id
}

// engineRootfs maps each container rootfs place (<root>/rootfs/<snapshotter>/
// <id>, in the caller's view) that the engine has mounted itself, in the
// caller's namespace or in a namespace a container engine runs in, to a
// phrase that says where. After a restart the engine mounts its live
// containers' rootfs anew: another superblock at the same place, so neither
// the replica rule (same device) nor the superblock rule sees it.
func engineRootfs(root string, holders []mountns.Holder, procs [][]Process, caller []*mountinfo.Info) map[string]string {
	out := map[string]string{}
	for _, m := range caller {
		if _, id := rootfsPath(root, m.Mountpoint); id != "" && out[m.Mountpoint] == "" {
			out[m.Mountpoint] = "the caller's namespace"
		}
	}
	for i, h := range holders {
		if !isEngine(procs[i]) {
			continue
		}
		for _, m := range h.Mounts {
			if _, id := rootfsOf(root, m); id != "" && out[m.HostPath] == "" {
				out[m.HostPath] = fmt.Sprintf("the container engine's namespace mnt:[%d]", h.Inode)
			}
		}
	}
	return out
}

// staleRootfsWhy says why a rootfs copy that nothing live uses is stale:
// its container stopped (<root>/containers/<id> is still there) or was
// removed.
func staleRootfsWhy(root, id string) string {
	_, err := os.Stat(filepath.Join(root, "containers", id))
	switch {
	case err == nil:
		return "the rootfs of stopped container " + id + ": no live container uses it"
	case os.IsNotExist(err):
		return "the rootfs of removed container " + id + " (no " + filepath.Join(root, "containers", id) + "): no live container uses it"
	}
	return "the rootfs of container " + id + ": no live container uses it"
}
