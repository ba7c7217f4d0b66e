package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/pkg/errors"
	"github.com/spf13/cobra"
)

func newRejoinCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg    daemon.RejoinConfig
		dryRun bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "rejoin [--root DIR] [--dry-run] -- DOCKERD [ARGS...]",
		Short: "Start dockerd in the mount namespace its live containers' mounts are in (systemd ExecStart=)",
		Long: `rejoin is a launcher for systemd's ExecStart= of a dockerd that runs with
MountFlags=slave and live-restore. Every start under MountFlags=slave gets a new
mount namespace, while live-restore keeps the containers' containerd shims,
and with them the previous daemon's namespace and every overlay mount in it,
alive: the restarted daemon cannot unmount them, removals fail with "device
or resource busy" on old kernels, and restore mounts a second overlay on each
live upperdir ("overlayfs: upperdir is in-use").

rejoin looks for the mount namespace the previous dockerd left its mounts in:
a namespace other than its own and the host's initial one (pid 1's; its own
when pid 1's cannot be read) that holds mounts below the data root and
containerd shims of the engine's containerd namespace (moby, or dockerd's
--containerd-namespace). A process counts as a shim only when it provably is
the engine's: it runs a shim binary of rejoin's own view (--shim; same
device and inode), in rejoin's pid namespace, on rejoin's root directory.
Its name and flags prove nothing: a root process inside a container can
take them. A namespace whose root directory is a container's (a layer below
the data root, a directory below it, anything but rejoin's /) is never
joined. With exactly one candidate it opens DOCKERD, joins the namespace on
a locked thread (unshare(CLONE_FS), setns) and executes the file it opened
(execveat), so dockerd, its containerd and new shims live next to the old
mounts and nothing leaks, and DOCKERD never comes from the namespace joined.
With none (first start, no live containers) it execs DOCKERD where it is.
With more than one, which one the last daemon used would be a guess: it says
so and execs DOCKERD where it is. When in doubt it does not join; it never
refuses to start DOCKERD. The pid does not change (systemd's main pid,
sd_notify and socket activation keep working). One line on stderr says which
namespace was chosen and why.

The data root is --root, else DOCKERD's --data-root, else the "data-root" of
DOCKERD's --config-file or /etc/docker/daemon.json, else /var/lib/docker.

--dry-run prints the decision (--json: as one JSON document) and starts
nothing; its exit status is 0 when the decision is clear (one namespace to
rejoin, or none), 1 when several qualify or the scan failed, 2 on bad input.`,
		Example: `  nsdetach rejoin -- /usr/bin/dockerd -H fd:// --live-restore
  nsdetach rejoin --dry-run -- /usr/bin/dockerd --data-root /home/docker_rt
  # systemd: deploy/systemd/docker.service.d/20-nsdetach-rejoin.conf`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Args = args
			if dryRun {
				return rejoinDryRun(cmd.Context(), stdout, cfg, asJSON)
			}
			return runRejoin(cmd.Context(), stderr, cfg)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&cfg.DataRoot, "root", "", "dockerd's data root (default: DOCKERD's --data-root, else daemon.json's, else /var/lib/docker)")
	cmd.Flags().StringArrayVar(&cfg.ShimBinaries, "shim", nil, "a containerd shim binary of the engine, repeatable (default: containerd-shim-runc-v2, containerd-shim-runc-v1, containerd-shim and docker-containerd-shim in PATH and in DOCKERD's directory)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the decision and start nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "with --dry-run, print the decision as one JSON document")
	return cmd
}

// rejoinDryRun is rejoin --dry-run: the decision, printed; nothing started.
func rejoinDryRun(ctx context.Context, stdout io.Writer, cfg daemon.RejoinConfig, asJSON bool) error {
	d, err := daemon.DecideRejoin(ctx, cfg)
	if err != nil {
		return classify(err)
	}
	if err := emit(stdout, asJSON, d, func() { fmt.Fprintln(stdout, decisionLine(d)) }); err != nil {
		return err
	}
	return found(!d.Rejoin && len(d.Candidates) > 0)
}

// runRejoin is rejoin: it decides and executes dockerd (cfg.Args), in the
// namespace decided on or, when anything goes wrong with that, where it is.
// It returns only when no dockerd could be executed.
func runRejoin(ctx context.Context, stderr io.Writer, cfg daemon.RejoinConfig) error {
	args := cfg.Args
	d, err := daemon.DecideRejoin(ctx, cfg)
	if err != nil {
		// A launcher that cannot decide still starts the daemon: the worst
		// case is the namespace it would have had anyway.
		fmt.Fprintf(stderr, "nsdetach rejoin: cannot decide (%v): starting %s in this mount namespace\n", err, args[0])
		d = daemon.RejoinDecision{}
	} else {
		fmt.Fprintln(stderr, "nsdetach rejoin:", decisionLine(d))
	}
	err = daemon.ExecRejoin(d, args, os.Environ())
	var ie *daemon.InputError
	if d.Rejoin && !errors.As(err, &ie) {
		fmt.Fprintf(stderr, "nsdetach rejoin: %v: starting %s in this mount namespace instead\n", err, args[0])
		err = daemon.ExecRejoin(daemon.RejoinDecision{}, args, os.Environ())
	}
	return classify(err)
}

// decisionLine is the decision in one line: the reason, and where the host's
// namespace was taken from when not from pid 1.
func decisionLine(d daemon.RejoinDecision) string {
	if d.HostNote != "" {
		return d.Reason + " (" + d.HostNote + ")"
	}
	return d.Reason
}
