//go:build !linux

package snapshotter

import (
	"context"

	"github.com/nsdetach/nsdetach/mountns"
)

// Mount namespaces are Linux's: elsewhere every call fails with
// mountns.ErrNotSupported. The patch series calls this package on Linux
// only; other platforms need Mountpoints only as the type of a field.

// Unmount fails: there are no mount namespaces on this platform.
func (*Mountpoints) Unmount(context.Context, string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}

// DetachStale fails: there are no mount namespaces on this platform.
func (*Mountpoints) DetachStale(context.Context, string, []string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}

// IsLive is false: nothing is ever recorded on this platform.
func (*Mountpoints) IsLive(string) bool { return false }
