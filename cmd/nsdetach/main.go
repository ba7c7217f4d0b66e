package main

import (
	"fmt"
	"io"
	"os"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK    = 0 // clean / nothing held
	exitFound = 1 // something found, remains or failed
	exitUsage = 2 // bad input; nothing was touched
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// advisedError is an error followed by what the user can do about it. The
// advice is added here, in the command: the library's errors say what
// failed, and end up in dockerd's answers too, where a command line of
// nsdetach would be out of place.
type advisedError struct {
	err    error
	advice string
}

func (e *advisedError) Error() string { return e.err.Error() + ": " + e.advice }

// Unwrap returns the error advised on.
func (e *advisedError) Unwrap() error { return e.err }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err != errFound {
			fmt.Fprintln(stderr, "nsdetach:", ee.err)
		}
		return ee.code
	}
	// Everything else cobra returns is a usage problem (unknown flag or
	// command, wrong number of arguments).
	fmt.Fprintln(stderr, "nsdetach:", err)
	fmt.Fprintln(stderr, "Run 'nsdetach --help' for usage.")
	return exitUsage
}

// errFound is the silent error behind exit code 1: the output already says
// what was found.
var errFound = errors.New("found")

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	var verbose bool
	root := &cobra.Command{
		Use:   "nsdetach",
		Short: "Find and detach mounts that leaked into other mount namespaces",
		Long: `nsdetach finds every mount namespace that still holds a mount (for example an
overlay2 layer that a restarted dockerd can no longer unmount because the old
daemon's namespace, pinned by containerd shims, still has it) and detaches the
mount inside each of those namespaces.

On a node: 'nsdetach doctor' says what is wrong and how to fix it, 'nsdetach
scan --root DIR' lists the leaked mounts (stale or pinned by a live
container), 'nsdetach detach --root DIR --stale-only' cleans them in one pass.
On a fleet: 'nsdetach serve' exports the same as Prometheus metrics
(deploy/kubernetes has a DaemonSet). In systemd's ExecStart=, 'nsdetach
rejoin -- DOCKERD ...' starts dockerd in the namespace its live containers'
mounts are in, so nothing leaks. Every command but serve and rejoin takes
--json.

Exit status: 0 clean or nothing held, 1 something found, remaining or failed,
2 usage error or missing privileges (nothing was touched).`,
		Example: `  nsdetach doctor
  nsdetach scan --root /var/lib/docker
  nsdetach detach --root /var/lib/docker --stale-only
  nsdetach holders /var/lib/docker/overlay2/3f1c.../merged
  nsdetach serve --listen :9733 --root /var/lib/docker`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			logrus.SetOutput(stderr)
			logrus.SetLevel(logrus.WarnLevel)
			if verbose {
				logrus.SetLevel(logrus.DebugLevel)
			}
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log every action (to stderr)")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newHoldersCommand(stdout), newDetachCommand(stdout), newScanCommand(stdout),
		newDoctorCommand(stdout), newServeCommand(stdout, stderr), newRejoinCommand(stdout, stderr),
		newVersionCommand(stdout))
	return root
}

// needsRoot is the advice after an error that says this process may not
// read or enter another process's mount namespace.
const needsRoot = "needs CAP_SYS_PTRACE and CAP_SYS_ADMIN: run as root"

// giveRoot is the advice after a path outside the allowed root.
const giveRoot = "pass the engine's data root with --root, or a path under it"

// classify tells bad input and missing privileges (exit 2: nothing could be
// looked at, so no answer is given) from failures (exit 1).
func classify(err error) error {
	var pe *mountns.PathError
	var oe *mountns.OutsideRootError
	var ie *daemon.InputError
	switch {
	case errors.As(err, &oe):
		return usageError(&advisedError{err: err, advice: giveRoot})
	case errors.As(err, &pe) || errors.As(err, &ie):
		return usageError(err)
	case errors.Is(err, mountns.ErrNotPermitted):
		return usageError(&advisedError{err: err, advice: needsRoot})
	}
	return &exitError{code: exitFound, err: err}
}
