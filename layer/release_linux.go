package layer

import (
	"context"
	stderrors "errors"
	"os"
	"path/filepath"

	"github.com/nsdetach/nsdetach/internal/paths"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/pkg/errors"
)

// initSuffix names a read-write layer's init layer; moby's layer store
// fixes it ("<graph-id>-init") for the drivers' sake.
const initSuffix = "-init"

// Retry runs release, the removal of the read-write layer whose driver id
// is id under the driver's home directory. When it fails with a busy error,
// Retry detaches, in every other mount namespace, the mounts of the layer
// directory that the error names (or of the layer and its init layer when
// it names none), then runs release once more. release must leave the layer
// as it was when it fails, as moby's ReleaseRWLayer does (it retakes the
// reference), so that a failed Retry can be retried later.
//
// Mounts are detached only under home, or under the root given with
// WithRoot. The error says which layer, which namespaces hold it, and what
// to do; release is not run again when a running container uses the layer
// as its root filesystem.
func Retry(ctx context.Context, home, id string, release func() error, opts ...mountns.Option) error {
	err := release()
	if err == nil || !IsBusy(err) {
		return err
	}
	dirs, derr := layerDirs(home, id)
	if derr != nil {
		return &ReleaseError{ID: id, Err: err, Detach: derr}
	}
	if d := busyDir(err, dirs); d != "" {
		dirs = []string{d}
	}
	if derr := detach(ctx, home, dirs, opts); derr != nil {
		return &ReleaseError{ID: id, Err: err, Detach: derr}
	}
	if err := release(); err != nil {
		return &ReleaseError{ID: id, Err: err}
	}
	return nil
}

// DetachLayer detaches, in every other mount namespace, the mounts of the
// layer whose driver id is id (home/<id> and home/<id>-init): mounts at or
// below those directories and overlays whose upper directory is there. It
// always scans. An id with no directory under home is an error, as is a
// copy that remains (a *overlay2.HeldError, which says whether a running
// container uses the layer).
func DetachLayer(ctx context.Context, home, id string, opts ...mountns.Option) error {
	dirs, err := layerDirs(home, id)
	if err != nil {
		return err
	}
	if err := detach(ctx, home, dirs, opts); err != nil {
		return errors.Wrapf(err, "layer %s", id)
	}
	return nil
}

// layerDirs returns the existing directories of layer id (the layer and its
// init layer) under home.
func layerDirs(home, id string) ([]string, error) {
	if !overlay2.IsLayerID(id) {
		return nil, errors.Errorf("layer %q: not a layer id (a single path element is expected, as the storage driver names layers)", id)
	}
	if !filepath.IsAbs(home) || filepath.Clean(home) != home {
		return nil, &mountns.PathError{Op: "driver home", Path: home, Err: errors.New("not an absolute, clean path")}
	}
	var dirs []string
	for _, d := range []string{filepath.Join(home, id), filepath.Join(home, id+initSuffix)} {
		if _, err := os.Lstat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil, errors.Wrapf(os.ErrNotExist, "layer %s: no directory %s under the driver's home (check the id: docker inspect shows it under GraphDriver.Data)",
			id, filepath.Join(home, id))
	}
	return dirs, nil
}

// busyDir returns the directory of dirs that holds the path err names.
func busyDir(err error, dirs []string) string {
	var pe *os.PathError
	if !errors.As(err, &pe) {
		return ""
	}
	for _, d := range dirs {
		if paths.Within(pe.Path, d) {
			return d
		}
	}
	return ""
}

func detach(ctx context.Context, home string, dirs []string, opts []mountns.Option) error {
	opts = append([]mountns.Option{mountns.WithRoot(home)}, opts...)
	var errs []error
	for _, d := range dirs {
		// No driver's Layers: what this pass finds about running containers
		// is not remembered (the driver's own DetachLayer, in Get and
		// Remove, does that for its Put).
		err := (*overlay2.Layers)(nil).DetachLayer(ctx, d, opts...)
		if err != nil && !errors.As(err, new(*overlay2.HeldError)) {
			return err // bad input or a failed scan: the same for every directory
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Every directory's error, not the first: each names its own holders.
	return stderrors.Join(errs...)
}
