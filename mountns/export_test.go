package mountns

import (
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// LegacyResolve switches the resolver to the path of pre-5.8 kernels (no
// statx mount ids, so no unique ones either).
var LegacyResolve = &legacyResolve

// LoseUmountRace makes every unmount of the detach path lose a race with
// another cleaner: the mount is detached (as the other would) just before
// the detach path's own umount2. It returns the function that undoes it.
func LoseUmountRace() (restore func()) {
	umount2 = func(name string, flags int) error {
		if err := unix.Unmount(name, flags); err != nil {
			return err
		}
		return unix.Unmount(name, flags)
	}
	return func() { umount2 = unix.Unmount }
}

// FailReread makes the detach path's re-read of a namespace's mount table
// fail with err. It returns the function that undoes it.
func FailReread(err error) (restore func()) {
	rereadTable = func(int, lineFilter) ([]*mountinfo.Info, []byte, error) { return nil, nil, err }
	return func() { rereadTable = readOwnTable }
}
