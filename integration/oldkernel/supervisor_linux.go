package oldkernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	seccomp "github.com/seccomp/libseccomp-golang"
	"github.com/sirupsen/logrus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// maxHandlers bounds the notifications answered at the same time. Each
// caller is blocked in its syscall until answered, so this only limits how
// many mount checks run at once.
const maxHandlers = 8

// Supervisor answers the notifications of one filter.
type Supervisor struct {
	// Checker decides whether a directory is busy elsewhere. Nil means
	// [ProcMountChecker].
	Checker MountChecker
	// Log receives one debug line per EBUSY answer and a warning per
	// failed check. Nil means logrus' standard logger.
	Log logrus.FieldLogger

	stats counters
}

// Stats counts what a [Supervisor] did.
type Stats struct {
	// Notifications is the number of notifications received.
	Notifications uint64
	// Busy is the number answered with EBUSY.
	Busy uint64
	// Continued is the number let through to the kernel unchanged, including
	// those whose check failed.
	Continued uint64
	// CheckErrors is the number of checks that failed (the call was let through).
	CheckErrors uint64
	// Gone is the number whose caller went away before it was answered:
	// killed, or interrupted by a signal, after which the kernel restarts
	// the call and notifies again.
	Gone uint64
}

type counters struct {
	notifications, busy, continued, checkErrors, gone atomic.Uint64
}

// Stats returns the counters so far.
func (s *Supervisor) Stats() Stats {
	return Stats{
		Notifications: s.stats.notifications.Load(),
		Busy:          s.stats.busy.Load(),
		Continued:     s.stats.continued.Load(),
		CheckErrors:   s.stats.checkErrors.Load(),
		Gone:          s.stats.gone.Load(),
	}
}

// Serve answers notifications on listener until no process has the filter
// any more (the listener reports POLLHUP) or stop becomes readable. It
// does not close listener.
func (s *Supervisor) Serve(ctx context.Context, listener int, stop int) error {
	sc, err := nativeSyscalls()
	if err != nil {
		return err
	}
	// Go blocks while maxHandlers answers run; answers never fail (a failed
	// check lets the call through), so Wait's error is always nil.
	var handlers errgroup.Group
	handlers.SetLimit(maxHandlers)
	defer func() { _ = handlers.Wait() }()
	fds := []unix.PollFd{{Fd: int32(listener), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return fmt.Errorf("oldkernel: poll listener: %w", err)
		}
		if fds[1].Revents != 0 {
			return nil
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			if fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				return nil
			}
			continue
		}
		req, err := seccomp.NotifReceive(seccomp.ScmpFd(listener))
		if err != nil {
			// ENOENT: the caller was killed between poll and receive.
			if errors.Is(err, unix.ENOENT) {
				s.stats.gone.Add(1)
				continue
			}
			return fmt.Errorf("oldkernel: receive notification: %w", err)
		}
		s.stats.notifications.Add(1)
		handlers.Go(func() error {
			s.answer(ctx, listener, sc, req)
			return nil
		})
	}
}

func (s *Supervisor) log() logrus.FieldLogger {
	if s.Log != nil {
		return s.Log
	}
	return logrus.StandardLogger()
}

func (s *Supervisor) answer(ctx context.Context, listener int, sc syscalls, req *seccomp.ScmpNotifReq) {
	resp := &seccomp.ScmpNotifResp{ID: req.ID, Flags: seccomp.NotifRespFlagContinue}
	busy, dir, err := s.decide(ctx, listener, sc, req)
	switch {
	case errors.Is(err, errGone):
		s.stats.gone.Add(1)
		return
	case err != nil:
		s.stats.checkErrors.Add(1)
		s.log().WithError(err).WithField("pid", req.Pid).Warn("oldkernel: check failed, letting the call through")
	case busy:
		// Positive errno: libseccomp negates it for the kernel.
		resp.Error, resp.Flags = int32(unix.EBUSY), 0
		s.log().WithFields(logrus.Fields{"pid": req.Pid, "path": dir}).Debug("oldkernel: mount point in another namespace, EBUSY")
	}
	if err := seccomp.NotifRespond(seccomp.ScmpFd(listener), resp); err != nil {
		// ENOENT: the caller was interrupted or killed while we looked.
		s.stats.gone.Add(1)
		if !errors.Is(err, unix.ENOENT) {
			s.log().WithError(err).WithField("pid", req.Pid).Warn("oldkernel: answer failed")
		}
		return
	}
	if resp.Error != 0 {
		s.stats.busy.Add(1)
	} else {
		s.stats.continued.Add(1)
	}
}

// errGone means the notification stopped being valid: the caller was
// killed, and the pid in hand may already name another process.
var errGone = errors.New("notification no longer valid")

// decide returns busy=false with a nil error for every call the kernel
// should judge by itself (bad address, bad dirfd, ".", non-directories...).
func (s *Supervisor) decide(ctx context.Context, listener int, sc syscalls, req *seccomp.ScmpNotifReq) (busy bool, dir string, err error) {
	d := req.Data
	if d.Arch != sc.arch {
		return false, "", nil
	}
	var dirfd int32
	var addr uint64
	switch {
	case sc.rmdir >= 0 && d.Syscall == sc.rmdir:
		dirfd, addr = unix.AT_FDCWD, d.Args[0]
	case d.Syscall == sc.unlinkat && d.Args[2]&unix.AT_REMOVEDIR != 0:
		dirfd, addr = int32(d.Args[0]), d.Args[1]
	default:
		return false, "", nil
	}
	tid := int(req.Pid)
	path, err := readString(tid, addr)
	if err != nil {
		return false, "", nil
	}
	if err := idValid(listener, req.ID); err != nil {
		return false, "", err
	}
	if base := filepath.Base(path); path == "" || base == "." || base == ".." || base == "/" {
		return false, "", nil
	}
	if !filepath.IsAbs(path) {
		at, err := callerDir(tid, dirfd)
		if err != nil {
			return false, "", nil
		}
		path = filepath.Join(at, path)
	}
	dir = filepath.Clean(path)
	if err := idValid(listener, req.ID); err != nil {
		return false, "", err
	}
	checker := s.Checker
	if checker == nil {
		checker = ProcMountChecker
	}
	busy, err = checker(ctx, tid, dir)
	return busy, dir, err
}

func idValid(listener int, id uint64) error {
	if seccomp.NotifIDValid(seccomp.ScmpFd(listener), id) != nil {
		return errGone
	}
	return nil
}

// readString reads a NUL-terminated path of at most PATH_MAX bytes from
// the memory of tid, a page at a time so that a string ending just before
// an unmapped page is still read.
func readString(tid int, addr uint64) (string, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/mem")
	if err != nil {
		return "", err
	}
	defer f.Close()
	page := uint64(os.Getpagesize())
	buf := make([]byte, 0, unix.PathMax)
	for len(buf) < unix.PathMax {
		n := page - addr%page
		if room := uint64(unix.PathMax - len(buf)); n > room {
			n = room
		}
		chunk := make([]byte, n)
		got, err := f.ReadAt(chunk, int64(addr))
		if i := bytes.IndexByte(chunk[:got], 0); i >= 0 {
			return string(append(buf, chunk[:i]...)), nil
		}
		if err != nil {
			return "", err
		}
		buf = append(buf, chunk...)
		addr += n
	}
	return "", unix.ENAMETOOLONG
}

// callerDir returns the directory a relative path of tid is resolved
// against, as tid sees it: its cwd or the directory open on dirfd, with
// tid's root taken off the front (readlink on procfs gives paths relative
// to the reader's root, not the caller's).
func callerDir(tid int, dirfd int32) (string, error) {
	proc := "/proc/" + strconv.Itoa(tid)
	link := proc + "/cwd"
	if dirfd != unix.AT_FDCWD {
		link = proc + "/fd/" + strconv.Itoa(int(dirfd))
	}
	at, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(at) {
		// Not a directory in the tree ("pipe:[…]", "anon_inode:…"):
		// the kernel answers ENOTDIR itself.
		return "", &os.PathError{Op: "readlink", Path: link, Err: unix.ENOTDIR}
	}
	root, err := os.Readlink(proc + "/root")
	if err != nil {
		return "", err
	}
	if root != "/" {
		rel, ok := strings.CutPrefix(at, root)
		if !ok || (rel != "" && rel[0] != '/') {
			return "", &os.PathError{Op: "resolve", Path: at, Err: fmt.Errorf("outside caller's root %q", root)}
		}
		at = "/" + rel
	}
	return at, nil
}
