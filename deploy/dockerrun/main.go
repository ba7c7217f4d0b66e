// Command dockerrun prints how `docker run` runs the pod of the nsdetach
// DaemonSet, translated field by field from the manifest (deploy.DockerRunOf),
// so that the e2e harness (integration/e2e/daemonset.sh) and `make image` use
// the manifest as their one source of truth. It fails on a field of the pod
// spec that it cannot translate.
//
//	dockerrun [-f MANIFEST] [-data-root DIR] run|image|port|healthz
//
// run prints docker run's arguments after "run", one per line (flags, image,
// the container's arguments); image the image the manifest names; port and
// healthz the probes' container port and path.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nsdetach/nsdetach/deploy"
)

func main() {
	manifest := flag.String("f", filepath.Join("deploy", deploy.DaemonSetFile), "the DaemonSet manifest")
	dataRoot := flag.String("data-root", "", "the node's data root, if not the manifest's")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: dockerrun [-f MANIFEST] [-data-root DIR] run|image|port|healthz")
		os.Exit(2)
	}
	ds, err := deploy.ReadDaemonSet(*manifest)
	var run deploy.DockerRun
	if err == nil {
		run, err = deploy.DockerRunOf(ds, *dataRoot)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerrun:", err)
		os.Exit(1)
	}
	switch flag.Arg(0) {
	case "run":
		fmt.Println(strings.Join(run.Argv(), "\n"))
	case "image":
		fmt.Println(run.Image)
	case "port":
		fmt.Println(run.Port)
	case "healthz":
		fmt.Println(run.HealthPath)
	default:
		fmt.Fprintf(os.Stderr, "dockerrun: %q: want run, image, port or healthz\n", flag.Arg(0))
		os.Exit(2)
	}
}
