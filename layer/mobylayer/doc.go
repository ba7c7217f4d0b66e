// Package mobylayer wraps moby's layer.Store so that releasing a
// container's read-write layer survives copies of its mounts in other mount
// namespaces: when the storage driver's removal fails with a busy error,
// ReleaseRWLayer detaches those copies and releases once more (layer.Retry).
// Everything else, reference counting included, is moby's store unchanged.
//
// When not to use it: in a dockerd built with the patch series, whose layer
// store already calls layer.Retry. Mounts are detached only under the home
// directory given to New (overlay2's, <data-root>/overlay2): it is written
// and tested for overlay2, not for other storage drivers.
//
// This package imports github.com/docker/docker; the patch series calls
// package layer instead, which does not (docs/architecture.md, the import
// rule).
package mobylayer
