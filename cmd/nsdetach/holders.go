package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nsdetach/nsdetach/mountns"
	"github.com/nsdetach/nsdetach/overlay2"
	"github.com/spf13/cobra"
)

func newHoldersCommand(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "holders PATH",
		Short: "List the mount namespaces, other than this one, that hold PATH",
		Long: `holders lists every mount namespace other than nsdetach's own that has PATH,
or a mount below it, mounted, with the processes in it. An overlay also matches
by its upperdir= option, so a holder that sees the layer under another path
(a container after pivot_root) is found too. Nothing is changed.

PATH must be absolute and clean. Exit status: 0 when no other namespace holds
PATH, 1 when some do, 2 on bad input or when a namespace or process could
not be read (run as root): no answer is given then.`,
		Example: `  nsdetach holders /var/lib/docker/overlay2/3f1c.../merged
  nsdetach holders --json /var/lib/docker`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runHolders(cmd.Context(), stdout, args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}

// runHolders is holders: the namespaces other than this one that hold path.
func runHolders(ctx context.Context, stdout io.Writer, path string, asJSON bool) error {
	holders, err := mountns.FindHolders(ctx, path, overlay2.Layout())
	if err != nil {
		return classify(err)
	}
	if holders == nil {
		holders = []mountns.Holder{} // JSON: [], not null
	}
	if err := emit(stdout, asJSON, map[string]interface{}{"path": path, "holders": holders}, func() {
		if len(holders) == 0 {
			fmt.Fprintf(stdout, "no other mount namespace holds %s\n", path)
		}
		for _, h := range holders {
			var ms []string
			for _, m := range h.Mounts {
				ms = append(ms, describeMount(m))
			}
			if h.RootUnknown != "" {
				ms = append(ms, "root unknown: "+h.RootUnknown)
			}
			fmt.Fprintf(stdout, "%s: %s\n", who(h.Namespace, h.Commands), strings.Join(ms, "; "))
		}
	}); err != nil {
		return err
	}
	return found(len(holders) > 0)
}
