// Package layer holds what moby's layer store needs on its release path
// when a container's read-write layer is still mounted in other mount
// namespaces: the driver's removal fails with EBUSY (kernels without
// detach-on-rmdir), moby retakes the reference and returns the error, and the
// container stays in "Removal In Progress".
//
// Retry wraps one release: it runs it, and only when it fails with a busy
// error detaches the foreign copies of the layer's mounts (the layer and its
// "-init" layer, through overlay2's DetachLayer) and runs it once more. What
// that pass finds about running containers is not remembered: the storage
// driver's own overlay2.Layers, filled by its Get and Remove, is what its Put
// consults.
// DetachLayer is that detach step on its own.
//
// When not to use it: a release that succeeds costs nothing extra, so there
// is no reason to detach before releasing. A layer that a running container
// still uses as its root filesystem is never detached and its release is not
// retried: its data must stay.
//
// This package must not import github.com/docker/docker: moby vendors it
// (the wrapper over moby's layer.Store lives in layer/mobylayer).
package layer
