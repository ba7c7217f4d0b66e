package mobylayer

import (
	"context"
	"time"

	"github.com/docker/docker/layer"
	nslayer "github.com/nsdetach/nsdetach/layer"
	"github.com/nsdetach/nsdetach/mountns"
)

// scanTimeout bounds the detach step of one release; layer.Store has no
// context, and a scan of a busy machine takes well under a second.
const scanTimeout = time.Minute

// Store is a layer.Store whose ReleaseRWLayer retries once after detaching
// a busy layer's foreign mounts.
type Store struct {
	layer.Store
	home string
	opts []mountns.Option
}

// New wraps s, whose storage driver keeps its layers in home (for overlay2,
// <data-root>/overlay2). Mounts are detached in other namespaces only under
// home; opts can add a logger, and tests a Lister.
func New(s layer.Store, home string, opts ...mountns.Option) *Store {
	return &Store{Store: s, home: home, opts: opts}
}

// ReleaseRWLayer is moby's, run a second time when the first fails because
// the layer's directory is busy and its foreign mounts could be detached.
// The reference bookkeeping is the inner store's: a failed release leaves
// the layer referenced, usable and releasable later; a successful one
// returns the inner store's metadata. A layer the store does not know gets
// the inner store's answer.
func (s *Store) ReleaseRWLayer(l layer.RWLayer) ([]layer.Metadata, error) {
	mountID, err := s.Store.GetMountID(l.Name())
	if err != nil {
		return s.Store.ReleaseRWLayer(l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	var md []layer.Metadata
	err = nslayer.Retry(ctx, s.home, mountID, func() (err error) {
		md, err = s.Store.ReleaseRWLayer(l)
		return err
	}, s.opts...)
	if err != nil {
		return nil, err
	}
	return md, nil
}
