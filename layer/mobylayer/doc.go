// Package mobylayer wraps moby's layer.Store so that releasing a
// container's read-write layer survives copies of its mounts in other mount
// namespaces: when the storage driver's removal fails with a busy error,
// ReleaseRWLayer detaches those copies and releases once more (layer.Retry).
// Everything else, reference counting included, is moby's store unchanged.
//
// This package imports github.com/docker/docker; the patch series calls
// package layer instead, which does not.
package mobylayer
