package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"github.com/pkg/errors"
	"golang.org/x/sys/unix"
)

// shimNames are the file names of the containerd shims Docker engines run:
// runc v2 and v1 (containerd 1.x and later), the legacy shim, and the
// docker-containerd-shim of Docker 17.x/18.x.
var shimNames = []string{"containerd-shim-runc-v2", "containerd-shim-runc-v1", "containerd-shim", "docker-containerd-shim"}

// shimBinaries are the shim executables a process must run to count as a
// shim of the engine: cfg's, else every shimNames file in PATH and in the
// directory of dockerd (args[0]), where Docker's own packages put them.
func shimBinaries(cfg RejoinConfig) []string {
	if len(cfg.ShimBinaries) > 0 {
		return cfg.ShimBinaries
	}
	var dirs []string
	if len(cfg.Args) > 0 {
		if p, err := exec.LookPath(cfg.Args[0]); err == nil {
			dirs = append(dirs, filepath.Dir(p))
		}
	}
	var out []string
	for _, name := range shimNames {
		if p, err := exec.LookPath(name); err == nil {
			out = append(out, p)
		}
		for _, d := range dirs {
			out = append(out, filepath.Join(d, name))
		}
	}
	return out
}

// fileID names a file: device and inode.
type fileID struct{ dev, ino uint64 }

// rootID is a process's root directory: the file, and the mount it is on
// as its own mount table shows it (the filesystem's device and the
// directory of it mounted).
type rootID struct {
	fileID
	major, minor int
	fsRoot       string
}

// shimProof is what a process must share with this one to count as a shim
// of the engine. A root process inside a container can take any name and
// flags, but it runs a file of its image (unless the engine's shim binary
// is mounted into it), in the container's pid namespace, on the
// container's root directory; the engine's shims run the host's shim
// binary, in the host's pid namespace, on the host's "/".
type shimProof struct {
	// binaries maps the shim executables of this view to their paths.
	binaries map[fileID]string
	pidNS    fileID
	root     rootID
}

// newShimProof reads this process's side of the proof. Shim binaries that
// do not exist are left out; with none, no process is a shim.
func newShimProof(binaries []string) (*shimProof, error) {
	p := &shimProof{binaries: map[fileID]string{}}
	for _, b := range binaries {
		if id, err := statID(b); err == nil {
			if _, dup := p.binaries[id]; !dup {
				p.binaries[id] = b
			}
		}
	}
	var err error
	if p.pidNS, err = statID("/proc/self/ns/pid"); err != nil {
		return nil, errors.Wrap(err, "reading this process's pid namespace")
	}
	if p.root, err = rootOf("self"); err != nil {
		return nil, errors.Wrap(err, "reading this process's root directory")
	}
	return p, nil
}

// check returns why pid is not provably a shim of the engine, or "" when
// it is: it must run one of the shim binaries, live in this process's pid
// namespace and have this process's root directory. Anything that cannot
// be read fails the check.
func (p *shimProof) check(pid int) string {
	proc := strconv.Itoa(pid)
	exe, err := statID("/proc/" + proc + "/exe")
	if err != nil {
		return fmt.Sprintf("(its executable cannot be read: %v)", err)
	}
	if _, ok := p.binaries[exe]; !ok {
		// The path is the process's to choose (a newline included): quoted.
		name, _ := os.Readlink("/proc/" + proc + "/exe")
		return fmt.Sprintf("runs %q, which is none of the shim binaries of this view (%s)", name, p.binaryList())
	}
	ns, err := statID("/proc/" + proc + "/ns/pid")
	if err != nil {
		return fmt.Sprintf("(its pid namespace cannot be read: %v)", err)
	}
	if ns != p.pidNS {
		return fmt.Sprintf("is in pid namespace pid:[%d], not this process's pid:[%d]", ns.ino, p.pidNS.ino)
	}
	root, err := rootOf(proc)
	if err != nil {
		return fmt.Sprintf("(its root directory cannot be verified: %v)", err)
	}
	if root != p.root {
		return fmt.Sprintf("has root directory %q (device %d:%d, inode %d), not this process's / (%q on %d:%d, inode %d)",
			root.fsRoot, root.major, root.minor, root.ino, p.root.fsRoot, p.root.major, p.root.minor, p.root.ino)
	}
	return ""
}

func (p *shimProof) binaryList() string {
	if len(p.binaries) == 0 {
		return "none found: give them with --shim"
	}
	var names []string
	for _, b := range p.binaries {
		names = append(names, b)
	}
	sort.Strings(names)
	return shortList(names)
}

// statID stats path, following symlinks (/proc/PID/exe names the file the
// process runs even when it was deleted or lies in another namespace).
func statID(path string) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: st.Dev, ino: st.Ino}, nil
}

// rootOf opens /proc/PID/root (PID may be "self") and returns what the
// directory is and which mount of PID's namespace it is on. The mount
// must be the namespace's "/" as PID's mount table shows it: a process
// chrooted into a bind mount of the host's "/" (same device and inode) is
// on another mount and fails. Mount ids differ between two namespaces even
// for copies of one mount, so the mount is compared by what it mounts
// (device, directory of the filesystem), not by id.
func rootOf(pid string) (rootID, error) {
	fd, err := unix.Open("/proc/"+pid+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return rootID{}, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return rootID{}, err
	}
	id, err := mountIDOfFD(fd)
	if err != nil {
		return rootID{}, err
	}
	f, err := os.Open("/proc/" + pid + "/mountinfo")
	if err != nil {
		return rootID{}, err
	}
	defer f.Close()
	mounts, err := mountinfo.GetMountsFromReader(f, func(m *mountinfo.Info) (skip, stop bool) { return m.ID != id, false })
	if err != nil {
		return rootID{}, err
	}
	if len(mounts) != 1 || mounts[0].Mountpoint != "/" {
		return rootID{}, errors.Errorf("its root directory is on mount %d, which is not the \"/\" of its mount table (chrooted)", id)
	}
	m := mounts[0]
	return rootID{fileID: fileID{dev: st.Dev, ino: st.Ino}, major: m.Major, minor: m.Minor, fsRoot: m.Root}, nil
}

// mountIDOfFD is the mount id of the file fd refers to: statx(STATX_MNT_ID)
// on kernels >= 5.8, name_to_handle_at before (2.6.39).
func mountIDOfFD(fd int) (int, error) {
	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx)
	if err == nil && stx.Mask&unix.STATX_MNT_ID != 0 {
		return int(stx.Mnt_id), nil
	}
	_, id, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	return id, err
}
