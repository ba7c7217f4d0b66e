//go:build !linux

package layer

import (
	"context"

	"github.com/nsdetach/nsdetach/mountns"
)

// Mount namespaces are Linux's: elsewhere Retry and DetachLayer fail with
// mountns.ErrNotSupported. The patch series calls this package on Linux only.

// Retry fails without running release: there are no mount namespaces on this
// platform.
func Retry(context.Context, string, string, func() error, ...mountns.Option) error {
	return mountns.ErrNotSupported
}

// DetachLayer fails: there are no mount namespaces on this platform.
func DetachLayer(context.Context, string, string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}
