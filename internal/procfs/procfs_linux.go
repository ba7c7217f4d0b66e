package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// MountNamespace returns the inode of pid's mount namespace, parsed from the
// /proc/PID/ns/mnt link ("mnt:[4026531841]").
func MountNamespace(pid int) (uint64, error) {
	var buf [32]byte
	return MountNamespaceAt("/proc/"+strconv.Itoa(pid)+"/ns/mnt", buf[:])
}

// MountNamespaceAt is MountNamespace for the link at path, reading it into
// buf (32 bytes are enough): for callers that ask thousands of processes.
func MountNamespaceAt(path string, buf []byte) (uint64, error) {
	n, err := unix.Readlink(path, buf)
	if err != nil {
		return 0, &os.PathError{Op: "readlink", Path: path, Err: err}
	}
	s := buf[:n]
	if !bytes.HasPrefix(s, []byte("mnt:[")) || !bytes.HasSuffix(s, []byte("]")) {
		return 0, &os.PathError{Op: "readlink", Path: path, Err: fmt.Errorf("unexpected link %q", s)}
	}
	ino, err := strconv.ParseUint(string(s[len("mnt:["):len(s)-1]), 10, 64)
	if err != nil {
		return 0, &os.PathError{Op: "readlink", Path: path, Err: fmt.Errorf("unexpected link %q", s)}
	}
	return ino, nil
}

// Comm returns pid's command name (/proc/PID/comm, at most 15 bytes), without
// the newline.
func Comm(pid int) (string, error) {
	p := "/proc/" + strconv.Itoa(pid) + "/comm"
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	var buf [64]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil {
		return "", &os.PathError{Op: "read", Path: p, Err: err}
	}
	return string(bytes.TrimRight(buf[:n], "\n")), nil
}

// PIDs returns every process (thread-group leader) in /proc, in the order
// the directory lists them.
func PIDs() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
