//go:build !linux

package daemon

import (
	"context"

	"github.com/nsdetach/nsdetach/mountns"
)

// EnsureRemoveAll fails: mount namespaces are Linux's, and the patch series
// calls it on Linux only (moby's containerfs.EnsureRemoveAll elsewhere).
func EnsureRemoveAll(context.Context, string, ...mountns.Option) error {
	return mountns.ErrNotSupported
}
