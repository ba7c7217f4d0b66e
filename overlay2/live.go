package overlay2

import (
	"path/filepath"
	"sync"
)

// liveLayers holds the layer directories (home/<id>) that DetachLayer last
// found to be a running container's root filesystem in another mount
// namespace: a container restored with live-restore. Put must keep such a
// layer's merged directory. runc exec runs with that directory as its
// working directory (in the shim's namespace), so removing it breaks
// `docker exec` into the container; stock moby removes it on kernels that
// detach on rmdir, and keeps it only because rmdir fails on older ones.
var liveLayers sync.Map

// setLive records what DetachLayer found for the layer directory dir.
func setLive(dir string, live bool) {
	if live {
		liveLayers.Store(dir, struct{}{})
	} else {
		liveLayers.Delete(dir)
	}
}

// IsLive reports whether the last DetachLayer of the layer directory dir
// found a running container on it. It costs a map lookup, no scan.
func IsLive(dir string) bool {
	_, ok := liveLayers.Load(dir)
	return ok
}

// liveMountpoint reports whether mountpoint is the merged directory of a
// live layer.
func liveMountpoint(mountpoint string) bool { return IsLive(filepath.Dir(mountpoint)) }
