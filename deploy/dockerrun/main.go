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
