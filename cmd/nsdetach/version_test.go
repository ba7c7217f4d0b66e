package main

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"testing"
)

func TestVersions(t *testing.T) {
	lib := func(v string, r *debug.Module) []*debug.Module {
		return []*debug.Module{{Path: "github.com/spf13/cobra", Version: "v1.9.1"}, {Path: libraryModule, Version: v, Replace: r}}
	}
	tests := []struct {
		name    string
		ldflags string
		bi      *debug.BuildInfo
		ok      bool
		want    Versions
	}{
		{"tagged, from go install", "",
			&debug.BuildInfo{GoVersion: "go1.23.4", Main: debug.Module{Version: "v0.2.0"}, Deps: lib("v0.2.0", nil)}, true,
			Versions{CLI: "v0.2.0", Library: "v0.2.0", Go: "go1.23.4"}},
		{"set with -ldflags -X main.version", "v0.3.0-rc.1",
			&debug.BuildInfo{GoVersion: "go1.23.4", Main: debug.Module{Version: "(devel)"}, Deps: lib("v0.3.0", nil)}, true,
			Versions{CLI: "v0.3.0-rc.1", Library: "v0.3.0", Go: "go1.23.4"}},
		{"library replaced by a checkout", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
				Deps: lib("v0.0.0-00010101000000-000000000000", &debug.Module{Path: "..", Version: "(devel)"})}, true,
			Versions{CLI: "(devel)", Library: "v0.0.0-00010101000000-000000000000", LibraryReplace: "..", Go: "go1.26.8"}},
		{"library replaced by another version", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.2.0"},
				Deps: lib("v0.2.0", &debug.Module{Path: "example.com/fork/nsdetach", Version: "v0.2.1"})}, true,
			Versions{CLI: "v0.2.0", Library: "v0.2.0", LibraryReplace: "example.com/fork/nsdetach v0.2.1", Go: "go1.26.8"}},
		{"library not in the build info", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			Versions{CLI: "(devel)", Library: "unknown", Go: "go1.26.8"}},
		{"no build info", "", nil, false, Versions{CLI: "unknown", Library: "unknown", Go: "unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := version
			version = tt.ldflags
			t.Cleanup(func() { version = old })
			if got := versions(tt.bi, tt.ok); got != tt.want {
				t.Errorf("versions() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestVersionCommand runs the command on this test binary's own build info,
// in which the library module is a dependency of the cmd module.
func TestVersionCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version", "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("nsdetach version --json: exit %d, stderr %q", code, stderr.String())
	}
	var v Versions
	if err := json.Unmarshal(stdout.Bytes(), &v); err != nil {
		t.Fatalf("nsdetach version --json: %v in %q", err, stdout.String())
	}
	if v.CLI == "" || v.Library == "unknown" || v.Go == "unknown" {
		t.Errorf("nsdetach version --json = %+v: every field should come from the build info", v)
	}
}
