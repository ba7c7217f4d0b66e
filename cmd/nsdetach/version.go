package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is the CLI's version, set when building with
// -ldflags "-X main.version=VERSION"; empty, the build info's version of the
// cmd module is used ("(devel)" for a build from a checkout).
var version string

// libraryModule is the module a moby fork vendors; its version in the build
// info says which library this binary was built with.
const libraryModule = "github.com/nsdetach/nsdetach"

// Versions is what `nsdetach version` prints.
type Versions struct {
	// CLI is main.version, or else the cmd module's version in the build info.
	CLI string `json:"cli"`
	// Library is the version of github.com/nsdetach/nsdetach in the build
	// info ("(devel)" when a go.work built it from a checkout).
	Library string `json:"library"`
	// LibraryReplace is where a replace directive pointed the library: a
	// directory, or a module path and version.
	LibraryReplace string `json:"library_replace,omitempty"`
	// Go is the toolchain that built the binary.
	Go string `json:"go"`
}

// versions reads Versions from main.version and the build info; ok is false
// for a binary built without module support, whose fields then say unknown.
func versions(bi *debug.BuildInfo, ok bool) Versions {
	v := Versions{CLI: version, Library: "unknown", Go: "unknown"}
	if !ok {
		if v.CLI == "" {
			v.CLI = "unknown"
		}
		return v
	}
	v.Go = bi.GoVersion
	if v.CLI == "" {
		v.CLI = bi.Main.Version
	}
	for _, m := range bi.Deps {
		if m.Path != libraryModule {
			continue
		}
		v.Library = m.Version
		if r := m.Replace; r != nil {
			v.LibraryReplace = r.Path
			if r.Version != "" && r.Version != "(devel)" {
				v.LibraryReplace += " " + r.Version
			}
		}
	}
	return v
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's version and the library module's it was built with",
		Long: `version prints the CLI's version (set at build time, or the module version
go install recorded) and the version of the library module
github.com/nsdetach/nsdetach that the binary was built with, from the build
information Go embeds in every binary. A moby fork tells what it vendored the
same way: 'go version -m dockerd' lists github.com/nsdetach/nsdetach.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := versions(debug.ReadBuildInfo())
			if asJSON {
				return writeJSON(stdout, v)
			}
			lib := v.Library
			if v.LibraryReplace != "" {
				lib += " (replaced by " + v.LibraryReplace + ")"
			}
			_, err := fmt.Fprintf(stdout, "nsdetach %s\nlibrary %s %s\ngo %s\n", v.CLI, libraryModule, lib, v.Go)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document")
	return cmd
}
