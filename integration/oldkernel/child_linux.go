package oldkernel

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// childEnv marks the re-executed child. Its value is the path of the
// command to execute; the child removes it from the environment it passes on.
const childEnv = "_OLDKERNEL_CHILD_EXEC"

// surface310Env tells the child to add the rules of Config.Surface310; the
// child removes it from the environment it passes on.
const surface310Env = "_OLDKERNEL_SURFACE_310"

// childSocketFd is where the child finds its end of the socket pair
// (exec.Cmd.ExtraFiles[0]).
const childSocketFd = 3

// Init takes over when the process is the child re-executed by [Run]: it
// installs the filter, hands the listener fd to the parent and execve's the
// command, so it never returns. Otherwise it returns at once. Call it first
// thing in main (or TestMain).
func Init() {
	path, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	// The filter is per thread; execve must run on the thread that has it.
	runtime.LockOSThread()
	fmt.Fprintf(os.Stderr, "oldkernel: %v\n", child(path))
	os.Exit(127)
}

// child installs the filter, hands over the listener and execve's path. It
// returns only when one of those failed, always with the error.
func child(path string) error {
	s, err := nativeSyscalls()
	if err != nil {
		return err
	}
	listener, err := loadFilter(s, os.Getenv(surface310Env) != "")
	if err != nil {
		return err
	}
	rights := unix.UnixRights(listener)
	if err := unix.Sendmsg(childSocketFd, []byte{0}, rights, nil, 0); err != nil {
		return fmt.Errorf("send listener fd: %w", err)
	}
	// Neither fd may reach the command: a listener held by a filtered process
	// deadlocks it on its own notifications.
	unix.Close(listener)
	unix.Close(childSocketFd)

	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, childEnv+"=") && !strings.HasPrefix(kv, surface310Env+"=") {
			env = append(env, kv)
		}
	}
	err = unix.Exec(path, os.Args, env)
	return &os.PathError{Op: "execve", Path: path, Err: err}
}
