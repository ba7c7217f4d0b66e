package nstest

import (
	"context"
	"sync/atomic"

	"github.com/nsdetach/nsdetach/mountns"
)

// Scans is a mountns.Lister that counts how often the namespaces are listed,
// for tests that show a fast path scans nothing. Safe for concurrent use.
type Scans struct{ n atomic.Int32 }

// List lists the namespaces with mountns.SystemLister and counts the call.
func (s *Scans) List(ctx context.Context) ([]mountns.Namespace, error) {
	s.n.Add(1)
	return mountns.SystemLister{}.List(ctx)
}

// Count is how many times List was called.
func (s *Scans) Count() int { return int(s.n.Load()) }
