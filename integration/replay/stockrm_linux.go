package replay

import (
	"os"
	"syscall"
	"time"

	"github.com/moby/sys/mount"
	"github.com/pkg/errors"
)

// stockEnsureRemoveAll is moby v28.5.2's containerfs.EnsureRemoveAll
// (internal/containerfs/rm.go, Apache-2.0), copied without change but for
// comments, because Go does not let code outside moby import an internal
// package. It is what cleanupContainer removes a container's root with
// (overlay2's Remove calls the original); in the force removal replayed
// here moby never gets that far, since the layer's release fails first,
// but the stock path stays moby's end to end.
func stockEnsureRemoveAll(dir string) error {
	notExistErr := make(map[string]bool)

	// track retries
	exitOnErr := make(map[string]int)
	maxRetry := 50

	// Attempt to unmount anything beneath this dir first
	mount.RecursiveUnmount(dir)

	for {
		err := os.RemoveAll(dir)
		if err == nil {
			return nil
		}

		pe, ok := err.(*os.PathError)
		if !ok {
			return err
		}

		if os.IsNotExist(err) {
			if notExistErr[pe.Path] {
				return err
			}
			notExistErr[pe.Path] = true

			if pe.Path == dir {
				return nil
			}
			continue
		}

		if !errors.Is(pe.Err, syscall.EBUSY) {
			return err
		}

		// mount.Unmount treats EINVAL (not mounted here) as success: a
		// mount that another namespace holds is retried until maxRetry.
		if e := mount.Unmount(pe.Path); e != nil {
			return errors.Wrapf(e, "error while removing %s", dir)
		}

		if exitOnErr[pe.Path] == maxRetry {
			return err
		}
		exitOnErr[pe.Path]++
		time.Sleep(100 * time.Millisecond)
	}
}
