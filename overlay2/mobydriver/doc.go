// Package mobydriver registers "overlay2-nsdetach", moby's own overlay2
// storage driver wrapped so that layer mounts left in other mount namespaces
// do not block it: Put finishes what moby's Put leaves behind
// (overlay2.Layers.RemoveMountpoint, with the driver's own Layers), Remove detaches the foreign copies of a
// layer's mounts before moby removes it, and refuses while a running
// container uses the layer, and Get detaches stale copies that a previous
// daemon left before mounting the layer again.
//
// It is the way in without patching moby: a dockerd main that imports this
// package can run with --storage-driver overlay2-nsdetach. The driver keeps
// moby's overlay2 layout, home directory and name (String is "overlay2"), so
// existing layers and image metadata are used as they are, and switching
// back to the stock driver needs nothing.
//
// When not to use it: in a dockerd built with the patch series (patches/),
// whose overlay2 driver already makes the same calls; with any storage
// driver other than overlay2, including the containerd image store
// (snapshotters) that Engine 29 uses by default on fresh installs; and from
// code that moby itself imports.
//
// This package imports github.com/docker/docker; the packages the patch
// series calls (overlay2, layer, daemon, mountns) must not, and none of them
// imports this one (docs/architecture.md, the import rule).
package mobydriver
