package overlay2

import (
	"path/filepath"
	"sync"
)

// Layers is what one storage driver remembers about its layers between
// calls: the layer directories (home/<id>) that DetachLayer last found to be
// a running container's root filesystem in another mount namespace (a
// container restored with live-restore). Unmount and RemoveMountpoint keep
// such a layer's merged directory: runc exec runs with that directory as
// its working directory (in the shim's namespace), so removing it breaks
// `docker exec` into the container. Stock moby removes it on kernels that
// detach on rmdir, and keeps it only because rmdir fails on older ones.
//
// The driver holds one for its lifetime (a field of moby's overlay2 Driver
// with the patch series, of mobydriver.Driver); the zero value is ready to
// use. A nil *Layers remembers nothing: it is what code that detaches a
// layer on its own (layer.Retry) uses.
type Layers struct {
	live sync.Map // layer directory -> struct{}
}

// setLive records what DetachLayer found for the layer directory dir.
func (l *Layers) setLive(dir string, live bool) {
	switch {
	case l == nil:
	case live:
		l.live.Store(dir, struct{}{})
	default:
		l.live.Delete(dir)
	}
}

// IsLive reports whether the last DetachLayer of the layer directory dir
// found a running container on it. It costs a map lookup, no scan.
func (l *Layers) IsLive(dir string) bool {
	if l == nil {
		return false
	}
	_, ok := l.live.Load(dir)
	return ok
}

// liveMountpoint reports whether mountpoint is the merged directory of a
// live layer.
func (l *Layers) liveMountpoint(mountpoint string) bool { return l.IsLive(filepath.Dir(mountpoint)) }
