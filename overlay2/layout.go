package overlay2

import (
	"path"
	"strings"

	"github.com/nsdetach/nsdetach/mountns"
)

// Layout is moby's overlay2 layout for mountns: a layer's merged directory
// (home/<id>/merged) has its overlay upper directory, home/<id>/diff,
// beside it, so an overlay with that upper directory is a copy of the
// merged directory wherever it is mounted (a running container's root). The
// functions of this package add it; a caller that passes a layer's merged
// directory to mountns itself (nsdetach holders, daemon.EnsureRemoveAll of
// a layer) adds it too.
func Layout() mountns.Option { return mountns.WithUpperDirOf(upperDirOf) }

// upperDirOf returns the diff directory beside a merged directory, or "".
func upperDirOf(target string) string {
	if path.Base(target) != "merged" {
		return ""
	}
	return path.Join(path.Dir(target), "diff")
}

// withLayout puts Layout before opts, which may replace it.
func withLayout(opts []mountns.Option) []mountns.Option {
	return append([]mountns.Option{Layout()}, opts...)
}

// IsLayerID reports whether id can name a layer: a single path element, as
// the storage driver names a layer's directory under its home
// (home/<id>). Anything else, joined to the home, names a path elsewhere.
func IsLayerID(id string) bool {
	return id != "" && id != "." && id != ".." && !strings.ContainsAny(id, "/\x00")
}
