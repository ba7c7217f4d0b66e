package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pkg/errors"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// serveCapabilities are the capabilities serve acts with, and why; the
// DaemonSet grants exactly these.
var serveCapabilities = []struct {
	bit  uint
	name string
	why  string
}{
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "setns into a holder's mount namespace and umount2 there"},
	{unix.CAP_SYS_CHROOT, "CAP_SYS_CHROOT", "setns(CLONE_NEWNS) requires it"},
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE", "open /proc/PID/ns/mnt and read /proc/PID/mountinfo of other processes"},
}

// processEnv is what the preflight reads about this process; tests replace
// it.
type processEnv struct {
	// effectiveCaps returns the effective capability set as a bit mask.
	effectiveCaps func() (uint64, error)
	// parentPID is getppid(2): 0 when the parent lives outside this
	// process's pid namespace.
	parentPID func() int
}

var thisProcess = processEnv{effectiveCaps: effectiveCapabilities, parentPID: unix.Getppid}

// effectiveCapabilities reads this process's effective set with capget(2).
func effectiveCapabilities() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, errors.Wrap(err, "capget")
	}
	return uint64(data[1].Effective)<<32 | uint64(data[0].Effective), nil
}

// preflight checks that serve can see and act on every mount namespace of
// the node before it scans: without the capabilities a scan reads few or no
// namespaces, and outside the node's pid namespace it sees only its own
// container's processes, and either way it would export zeros that look like
// a clean node. It returns one error naming everything that is missing and
// what to grant.
func (env processEnv) preflight() error {
	var problems []string
	effective, err := env.effectiveCaps()
	if err != nil {
		problems = append(problems, fmt.Sprintf("cannot read its capabilities: %v", err))
	} else {
		for _, c := range serveCapabilities {
			if effective&(1<<c.bit) == 0 {
				problems = append(problems, fmt.Sprintf("%s is missing (%s): add it (DaemonSet securityContext.capabilities.add: %s; docker run --cap-add %s)",
					c.name, c.why, strings.TrimPrefix(c.name, "CAP_"), strings.TrimPrefix(c.name, "CAP_")))
			}
		}
	}
	// A process started by a runtime in the node's pid namespace sees its
	// parent (the shim); in a pid namespace of its own (a pod without
	// hostPID) the parent lies outside and getppid returns 0.
	if env.parentPID() == 0 {
		problems = append(problems, "it is not in the node's pid namespace (its parent process is outside its pid namespace), so it cannot see the processes that pin other mount namespaces: run it with hostPID: true (docker run --pid=host)")
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.Errorf("preflight failed, no scan will run: %s", strings.Join(problems, "; "))
}

// serveNotReady is serve after a failed preflight: it logs why, and answers
// every request (/healthz and /metrics alike) with 503 and the reason until
// ctx ends, so that the probes fail and Prometheus marks the target down
// instead of scraping zeros. It returns exit code 1 once stopped.
func serveNotReady(ctx context.Context, listen string, stdout io.Writer, reason error) error {
	logrus.WithError(reason).Error("nsdetach serve: not ready")
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return listenError(listen, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "nsdetach serve: "+reason.Error(), http.StatusServiceUnavailable)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stdout, "nsdetach: NOT READY, answering 503 on http://%s/healthz and /metrics: %v\n", ln.Addr(), reason)
	if err := serveUntil(ctx, srv, ln, func() {}); err != nil {
		return err
	}
	return &exitError{code: exitFound, err: reason}
}
