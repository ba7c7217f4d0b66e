//go:build !linux

package overlay2

import (
	"context"

	"github.com/nsdetach/nsdetach/mountns"
)

// overlayfs and mount namespaces are Linux's: elsewhere every call fails with
// mountns.ErrNotSupported. The patch series calls this package on Linux only.

// Unmount fails: there is no overlayfs on this platform.
func (*Layers) Unmount(context.Context, string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}

// UnmountMountpoint returns mountns.ErrNotSupported.
func UnmountMountpoint(context.Context, string, bool, ...mountns.Option) error {
	return mountns.ErrNotSupported
}

// RemoveMountpoint fails: there is no overlayfs on this platform.
func (*Layers) RemoveMountpoint(context.Context, string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}

// DetachLayer fails: there is no overlayfs on this platform.
func (*Layers) DetachLayer(context.Context, string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}
