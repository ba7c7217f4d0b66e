// Package overlay2 holds the parts of moby's overlay2 storage driver that
// must survive copies of a layer's mount living on in other mount
// namespaces (a daemon restarted into a new namespace while the shims of the
// old one live on).
//
// A driver holds a Layers value for its lifetime: what it found about
// running containers on its layers, which its calls share. Layers.Unmount is
// the body of Driver.Put once the layer's reference count reached zero:
// unmount here, remove the mount point, and only when the kernel says "not
// mounted here" or "busy" find the namespaces that hold the mount and detach
// it there (package mountns). Layers.DetachLayer is what Driver.Remove and
// Driver.Get call before they touch a layer's directory. Layout is moby's
// overlay2 layout for mountns (a layer's merged directory and its upper
// directory, diff, beside it), which every call here adds.
//
// When not to use it: while a layer is still referenced in this process, or
// for a layer that was never mounted as an overlay (no "lower" file). The
// fast path of Unmount (the local unmount and the rmdir succeed) costs no
// scan; DetachLayer always scans, so call it only where a scan is worth its
// price (removing a layer, remounting one that a previous daemon left
// behind).
//
// This package must not import github.com/docker/docker: moby vendors it and
// its overlay2 driver calls it (the wrapper that imports moby lives in
// overlay2/mobydriver).
package overlay2
