package daemon

import (
	"context"
	"os"
	"path/filepath"

	"github.com/moby/sys/mount"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// EnsureRemoveAll removes dir and everything below it, like moby's
// containerfs.EnsureRemoveAll, but it also frees mount points that other
// mount namespaces hold. When a removal answers EBUSY for a path, it
// unmounts the path here, or, when the kernel says it is not mounted here,
// detaches its copies in the namespaces that hold it (mountns.Unmount), and
// retries at once. A path that is busy a second time ends it, as does ctx:
// there is no sleeping retry loop.
//
// Mounts are detached only under the root given with WithRoot; the default
// is dir itself, since everything under it is being deleted. A removal that
// succeeds at once costs no scan. A missing dir is success. The error names
// the busy path, the namespaces that hold it, their processes and commands
// (a *BusyError).
func EnsureRemoveAll(ctx context.Context, dir string, opts ...mountns.Option) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || dir == "/" {
		return &mountns.PathError{Op: "directory to remove", Path: dir, Err: errors.New("not an absolute, clean path below /")}
	}
	// A dir that is a symlink to / passes the text check; as the default
	// root it would allow detaching any mount.
	if real, err := filepath.EvalSymlinks(dir); err == nil && real == "/" {
		return &mountns.PathError{Op: "directory to remove", Path: dir, Err: errors.New("resolves to / (symlinks followed)")}
	}
	// The busy path may be a layer's merged directory (moby's overlay2
	// Remove calls this for a layer): overlay2.Layout lets its copies
	// be found wherever they are mounted.
	opts = append([]mountns.Option{mountns.WithRoot(dir), overlay2.Layout()}, opts...)
	// The kernel's answers, or in tests an old kernel's (mountns.WithRemover).
	removeAll := mountns.RemoverOf(opts...).RemoveAll
	notExist := map[string]bool{}
	freed := map[string]mountns.Report{}

	// As moby does: what is mounted below dir here goes first, in one pass.
	_ = mount.RecursiveUnmount(dir)

	for {
		err := removeAll(dir)
		if err == nil {
			return nil
		}
		var pe *os.PathError
		if !errors.As(err, &pe) {
			return err
		}
		if os.IsNotExist(err) {
			// A subdirectory can vanish between reading a directory and
			// removing its entries: retry once per path; dir itself gone is
			// success.
			if pe.Path == dir {
				return nil
			}
			if notExist[pe.Path] {
				return err
			}
			notExist[pe.Path] = true
			continue
		}
		if !errors.Is(pe.Err, unix.EBUSY) {
			return err
		}
		if rep, done := freed[pe.Path]; done {
			return &BusyError{Dir: dir, Path: pe.Path, Report: rep, Err: err}
		}
		if cerr := ctx.Err(); cerr != nil {
			return &BusyError{Dir: dir, Path: pe.Path, Err: err, cause: cerr}
		}
		rep, uerr := mountns.Unmount(ctx, pe.Path, opts...)
		freed[pe.Path] = rep
		if uerr != nil {
			// Retrying cannot help: some copy could not be detached, or the
			// path cannot be acted on (outside the root, ctx ended).
			return &BusyError{Dir: dir, Path: pe.Path, Report: rep, Err: err, cause: uerr}
		}
	}
}
