package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/nsdetach/nsdetach/mountns"
	"github.com/spf13/cobra"
)

func newDetachCommand(stdout io.Writer) *cobra.Command {
	var (
		root   string
		dryRun bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "detach [PATH] --root DIR",
		Short: "Detach every foreign copy of PATH (and mounts below it)",
		Long: `detach finds every mount namespace other than nsdetach's own that holds PATH or
a mount below it and detaches those mounts inside each namespace (one setns per
namespace). Only mounts under --root (the engine's data root) are ever touched;
PATH defaults to --root itself. Each mount point is resolved in the holder's
view without following symlinks and must still be the mount that was scanned
(mount id and device), or it is refused.

A mount that is a holder's root directory (a running container's rootfs) is
refused: a process runs on it.

Exit status: 0 when no foreign copy remains, 1 when something remains, was
refused or failed, 2 on bad input or when PATH is outside --root (nothing is
touched then).`,
		Example: `  nsdetach detach /var/lib/docker/overlay2/3f1c.../merged --root /var/lib/docker
  nsdetach detach --root /var/lib/docker --dry-run`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if root == "" {
				return usageError(errors.New("--root DIR is required: the engine's data root, outside which nothing is touched"))
			}
			target := root
			if len(args) == 1 {
				target = args[0]
			}
			rep, err := mountns.DetachAll(cmd.Context(), target, mountns.WithRoot(root), mountns.WithDryRun(dryRun))
			var de *mountns.DetachError
			if err != nil && !errors.As(err, &de) {
				return classify(err)
			}
			if asJSON {
				if rep.Namespaces == nil {
					rep.Namespaces = []mountns.NamespaceReport{}
				}
				if err := writeJSON(stdout, rep); err != nil {
					return err
				}
			} else {
				printReport(stdout, rep)
			}
			if err != nil || (dryRun && len(rep.Namespaces) > 0) {
				return &exitError{code: exitFound, err: errFound}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&root, "root", "", "the engine's data root; nothing outside it is touched (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "resolve and verify every mount, detach nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as one JSON document")
	return cmd
}

// printReport writes one line per namespace and a summary line.
func printReport(w io.Writer, rep mountns.Report) {
	if len(rep.Namespaces) == 0 {
		fmt.Fprintf(w, "no other mount namespace holds %s\n", rep.Target)
		return
	}
	for _, ns := range rep.Namespaces {
		var parts []string
		if ns.Error != "" {
			parts = append(parts, "error: "+ns.Error)
		}
		for _, m := range ns.Result {
			s := fmt.Sprintf("%s %s (mount %d)", m.Action, m.Mountpoint, m.ID)
			if m.Reason != "" {
				s += ": " + m.Reason
			}
			if m.Remains && m.Action != mountns.WouldDetach {
				s += " [still mounted]"
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(w, "%s: %s\n", who(ns.Namespace, ns.Commands), strings.Join(parts, "; "))
	}
	by, remaining := rep.Count()
	var counts []string
	for a, n := range by {
		counts = append(counts, fmt.Sprintf("%d %s", n, a))
	}
	sort.Strings(counts)
	fmt.Fprintf(w, "summary: %d namespaces: %s; %d remaining\n", len(rep.Namespaces), strings.Join(counts, ", "), remaining)
}
