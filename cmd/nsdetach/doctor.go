package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/spf13/cobra"
)

func newDoctorCommand(stdout io.Writer) *cobra.Command {
	var (
		cfg    daemon.DoctorConfig
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "doctor [--pid PID] [--config FILE] [--root DIR]",
		Short: "Check a dockerd for the leaked-mount hazard and say how to fix it",
		Long: `doctor examines the running dockerd and the kernel for the conditions behind
containers stuck in "Removal In Progress" with "device or resource busy", and
prints each finding with why it matters and the exact command or configuration
line that fixes it:

  mount-namespace  dockerd in a mount namespace other than the host's (pid 1's;
                   nsdetach's own if pid 1's cannot be read, which is said):
                   the symptom of systemd's MountFlags=slave, which gives the
                   daemon a new namespace on every start. Fix: a systemd
                   drop-in with MountFlags=shared.
  live-restore     read from dockerd's command line (--live-restore) and its
                   daemon.json; with a namespace of its own, live-restore keeps
                   the old namespace alive through the containerd shims. Fix:
                   the MountFlags drop-in, or keep MountFlags=slave and start
                   dockerd through 'nsdetach rejoin' (a drop-in for your
                   dockerd's command line is printed).
  kernel           whether rmdir detaches a directory that is a mount point in
                   another namespace (Linux >= 3.18, or fs.may_detach_mounts=1
                   where that sysctl exists); if not, every leak blocks
                   'docker rm'. Fix: the sysctl, or a newer kernel.
  leaks            mounts under the data root that namespaces other than
                   dockerd's hold, with their processes, stale or pinned (see
                   'nsdetach scan'). Fix: 'nsdetach detach --root DIR ...'.

dockerd is the process given with --pid, or else the one process named
dockerd. daemon.json is --config (in nsdetach's view), or else the file named
by dockerd's --config-file or /etc/docker/daemon.json, read through dockerd's
own root (/proc/PID/root), so doctor run from a container sees the host's. The
data root is --root, or else dockerd's --data-root, daemon.json's "data-root",
or /var/lib/docker. Nothing is changed.

Exit status: 0 when every finding is ok, 1 when something needs fixing, 2 on
bad input: a pid that is not dockerd, a daemon config that is not valid JSON,
a --root or --config that does not exist.`,
		Example: `  nsdetach doctor
  nsdetach doctor --pid $(pidof dockerd) --root /home/docker_rt
  nsdetach doctor --config /etc/docker/daemon.json --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDoctor(cmd.Context(), stdout, cfg, asJSON)
		},
	}
	cmd.Flags().IntVar(&cfg.PID, "pid", 0, "dockerd's pid (default: the one process named dockerd)")
	cmd.Flags().StringVar(&cfg.ConfigFile, "config", "", "dockerd's daemon.json (default: dockerd's --config-file, else /etc/docker/daemon.json)")
	cmd.Flags().StringVar(&cfg.DataRoot, "root", "", "dockerd's data root (default: dockerd's --data-root, else daemon.json's, else /var/lib/docker)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the diagnosis as one JSON document")
	return cmd
}

// runDoctor is doctor: the diagnosis of the dockerd cfg names.
func runDoctor(ctx context.Context, stdout io.Writer, cfg daemon.DoctorConfig, asJSON bool) error {
	d, err := daemon.Doctor(ctx, cfg)
	if err != nil {
		return classify(err)
	}
	if err := emit(stdout, asJSON, d, func() { printDiagnosis(stdout, d) }); err != nil {
		return err
	}
	return found(d.NeedsAction())
}

var statusLabel = map[daemon.Status]string{
	daemon.StatusOK:      "ok",
	daemon.StatusInfo:    "info",
	daemon.StatusWarning: "WARNING",
	daemon.StatusProblem: "PROBLEM",
}

// printDiagnosis writes each finding; for those that need action, why and
// the fix, indented so that the fix can be copied as is.
func printDiagnosis(w io.Writer, d daemon.Diagnosis) {
	count := map[daemon.Status]int{}
	for _, f := range d.Findings {
		count[f.Status]++
		fmt.Fprintf(w, "[%s] %s: %s\n", statusLabel[f.Status], f.Check, f.Summary)
		for _, l := range f.Details {
			fmt.Fprintf(w, "    %s\n", l)
		}
		if f.Why != "" {
			fmt.Fprintf(w, "  why: %s\n", f.Why)
		}
		if f.Fix != "" {
			fmt.Fprintln(w, "  fix:")
			for _, l := range strings.Split(f.Fix, "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	if !d.NeedsAction() {
		fmt.Fprintln(w, "doctor: all clear")
		return
	}
	fmt.Fprintf(w, "doctor: %d problems, %d warnings: apply the fixes above in order\n", count[daemon.StatusProblem], count[daemon.StatusWarning])
}
