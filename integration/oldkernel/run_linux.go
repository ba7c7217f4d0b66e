package oldkernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Config describes the command [Run] starts under the emulator.
type Config struct {
	// Args is the command and its arguments; Args[0] is looked up in PATH.
	Args []string
	// Env is the command's environment; nil means os.Environ().
	Env []string
	// Dir is the command's working directory; empty means the current one.
	Dir string
	// Stdin, Stdout and Stderr are the command's; nil means /dev/null, as
	// with exec.Cmd.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Forward lists the signals that, received by this process while the
	// command runs, are passed on to it instead of acting here (the command
	// line tool forwards SIGTERM and SIGINT).
	Forward []os.Signal
	// Abandon makes Run return as soon as the command has exited, even if
	// descendants that inherited the filter (daemons, container shims)
	// still run. Their later rmdir calls then fail with ENOSYS, because a
	// filter whose listener is closed answers every notification so.
	// Without Abandon, Run keeps answering until the last of them exits.
	Abandon bool
	// Surface310 also makes every system call that Linux 3.10 (RHEL 7's
	// kernel) lacks fail with ENOSYS, and the nsfs ioctls it lacks with
	// ENOTTY, for the command and its descendants: statx, openat2,
	// listmount, statmount, execveat, pidfd_open, the namespace walk, ...
	// (filter_linux.go lists them). Code run so must take the fallbacks it
	// has for old kernels; a kernel's other differences (file contents in
	// /proc, mount semantics) are not emulated.
	Surface310 bool
	// Checker and Log are passed to the [Supervisor].
	Checker MountChecker
	Log     logrus.FieldLogger
}

// Result is what [Run] observed.
type Result struct {
	// ExitCode is the command's exit status, or 128+N if signal N killed it
	// (the shell's convention).
	ExitCode int
	// Stats counts the notifications answered.
	Stats Stats
}

// Run starts cfg.Args under the emulator and waits for it (and, unless
// cfg.Abandon, for every process that inherited the filter). The binary
// must call [Init] at the start of main. Cancelling ctx kills the command
// and stops answering its descendants, as Abandon does.
//
// An error means the command could not be started under the filter, or the
// supervisor failed; the command's own failure is only its exit code.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if len(cfg.Args) == 0 {
		return Result{}, errors.New("oldkernel: no command")
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	path, err := lookPath(cfg.Args[0], env, cfg.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("oldkernel: %w", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Result{}, fmt.Errorf("oldkernel: socketpair: %w", err)
	}
	parentSock := os.NewFile(uintptr(pair[0]), "oldkernel-parent")
	childSock := os.NewFile(uintptr(pair[1]), "oldkernel-child")
	defer parentSock.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = cfg.Args
	cmd.Env = append(env[:len(env):len(env)], childEnv+"="+path)
	if cfg.Surface310 {
		cmd.Env = append(cmd.Env, surface310Env+"=1")
	}
	cmd.Dir = cfg.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{childSock}

	// Registered before the start, so no forwarded signal falls in between.
	sigs := make(chan os.Signal, 4)
	if len(cfg.Forward) > 0 {
		signal.Notify(sigs, cfg.Forward...)
		defer signal.Stop(sigs)
	}
	err = cmd.Start()
	childSock.Close()
	if err != nil {
		return Result{}, fmt.Errorf("oldkernel: start: %w", err)
	}
	listener, err := recvFd(pair[0])
	if err != nil {
		// The child reported why on stderr; it exits 127.
		_ = cmd.Wait()
		return Result{}, fmt.Errorf("oldkernel: child did not hand over the listener: %w", err)
	}
	defer unix.Close(listener)

	stop, err := newPipe()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return Result{}, err
	}
	defer stop.Close()
	sup := &Supervisor{Checker: cfg.Checker, Log: cfg.Log}
	served := make(chan error, 1)
	go func() { served <- sup.Serve(ctx, listener, int(stop.r.Fd())) }()
	stopServing := sync.OnceFunc(func() { stop.w.Close() })
	cancelled := context.AfterFunc(ctx, stopServing)
	defer cancelled()

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var waitErr error
	for done := false; !done; {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
		case waitErr = <-waited:
			done = true
		case err := <-served:
			if err != nil {
				// Nothing answers the command any more.
				cmd.Process.Kill()
				<-waited
				return Result{Stats: sup.Stats()}, err
			}
			// No process has the filter: the command has exited and only
			// waits to be reaped.
			served <- nil
			waitErr = <-waited
			done = true
		}
	}
	res := Result{ExitCode: exitCode(cmd.ProcessState)}
	if cmd.ProcessState == nil {
		return res, fmt.Errorf("oldkernel: wait: %w", waitErr)
	}
	if cfg.Abandon {
		stopServing()
	}
	err = <-served
	res.Stats = sup.Stats()
	return res, err
}

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// lookPath finds file the way the child's execve will be given it: through
// the command's PATH, relative to its working directory. It fails here,
// with the usual error, for what the child could not execute.
func lookPath(file string, env []string, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		_, err := exec.LookPath(p)
		return file, err
	}
	probe := exec.Command(file)
	probe.Env, probe.Dir = env, dir
	if probe.Err != nil {
		return "", probe.Err
	}
	return probe.Path, nil
}

func recvFd(sock int) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, err
	}
	if len(msgs) != 1 {
		return -1, io.ErrUnexpectedEOF
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return -1, err
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, io.ErrUnexpectedEOF
	}
	return fds[0], nil
}

type pipe struct{ r, w *os.File }

func newPipe() (*pipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("oldkernel: pipe: %w", err)
	}
	return &pipe{r, w}, nil
}

func (p *pipe) Close() {
	p.r.Close()
	p.w.Close()
}
