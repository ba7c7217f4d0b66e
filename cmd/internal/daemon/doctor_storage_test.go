package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
)

// TestDoctorStorage: doctor tells the containerd image store from a
// graphdriver as Engine 29 decides it (feature flag, prior graphdriver state,
// storage driver name, default), says which evidence decided, and counts the
// leaked container rootfs under the snapshotter's rootfs directory.
func TestDoctorStorage(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name string
		// args are dockerd's arguments after --data-root ROOT; %CONFIG% is
		// replaced by daemon.json's path.
		args   []string
		config string
		// layout are directories made under the data root, before dockerd
		// "starts".
		layout []string
		// leak leaves a removed container's rootfs mounted in an old
		// namespace.
		leak       bool
		mode       string
		driver     string
		from       string
		rootfsLine string
	}{
		{name: "fresh data root, nothing configured: Engine 29's default",
			mode: daemon.ModeSnapshotter, driver: "overlayfs", from: "Engine 29's default"},
		{name: "graphdriver state from an earlier run",
			layout: []string{"overlay2/l"},
			mode:   daemon.ModeGraphdriver, driver: "overlay2", from: "holds graphdriver state"},
		{name: "an empty overlay2 directory is no graphdriver state",
			layout: []string{"overlay2"},
			mode:   daemon.ModeSnapshotter, driver: "overlayfs", from: "Engine 29's default"},
		{name: "--storage-driver names a graphdriver",
			args: []string{"--storage-driver=overlay2"},
			mode: daemon.ModeGraphdriver, driver: "overlay2", from: "--storage-driver on dockerd's command line names a graphdriver"},
		{name: "-s names a snapshotter",
			args: []string{"-s", "native"},
			mode: daemon.ModeSnapshotter, driver: "native", from: "names a containerd snapshotter"},
		{name: "feature flag off on the command line",
			args: []string{"--feature", "containerd-snapshotter=false"},
			mode: daemon.ModeGraphdriver, driver: "overlay2", from: "--feature containerd-snapshotter on dockerd's command line is false"},
		{name: "feature on in daemon.json wins over graphdriver state",
			args: []string{"--config-file", "%CONFIG%"}, config: `{"features": {"containerd-snapshotter": true}}`,
			layout: []string{"overlay2/l"},
			mode:   daemon.ModeSnapshotter, driver: "overlayfs", from: `"features": {"containerd-snapshotter"} in daemon.json is true`},
		{name: "storage-driver in daemon.json",
			args: []string{"--config-file", "%CONFIG%"}, config: `{"storage-driver": "overlay2"}`,
			mode: daemon.ModeGraphdriver, driver: "overlay2", from: `"storage-driver" in daemon.json names a graphdriver`},
		{name: "a removed container's rootfs leaked",
			leak: true,
			mode: daemon.ModeSnapshotter, driver: "overlayfs", from: "Engine 29's default",
			rootfsLine: ": 1 stale and 0 pinned leaked container rootfs mounts in other namespaces"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			root := filepath.Join(dir, "docker")
			config := filepath.Join(dir, "daemon.json")
			mkdirs(t, root)
			for _, l := range c.layout {
				mkdirs(t, filepath.Join(root, l))
			}
			if c.config != "" {
				if err := os.WriteFile(config, []byte(c.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if c.leak {
				rootfs := filepath.Join(root, "rootfs", "overlayfs", "gone")
				mountSnapshot(t, newSnapshot(t, filepath.Join(dir, "snapshot")), rootfs)
				nstest.StartHolder(t, nstest.HolderSpec{})
				forget(t, rootfs)
			}
			args := []string{"--data-root", root}
			for _, a := range c.args {
				args = append(args, strings.ReplaceAll(a, "%CONFIG%", config))
			}
			dockerd := nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd", Args: args})
			d, err := daemon.Doctor(context.Background(), daemon.DoctorConfig{PID: dockerd.PID, HostPID: os.Getpid()})
			if err != nil {
				t.Fatal(err)
			}
			s := d.Storage
			if s.Mode != c.mode || s.Driver != c.driver || !strings.Contains(s.From, c.from) {
				t.Errorf("storage %+v, want mode %s, driver %s, from containing %q", s, c.mode, c.driver, c.from)
			}
			wantDir := ""
			if c.mode == daemon.ModeSnapshotter {
				wantDir = filepath.Join(root, "rootfs", c.driver)
			}
			if s.RootfsDir != wantDir {
				t.Errorf("rootfs dir %q, want %q", s.RootfsDir, wantDir)
			}
			var f *daemon.Finding
			for i := range d.Findings {
				if d.Findings[i].Check == "storage" {
					f = &d.Findings[i]
				}
			}
			if f == nil || !strings.Contains(f.Summary, c.driver) || !strings.Contains(f.Summary, s.From) {
				t.Fatalf("storage finding %+v does not name %s and its evidence", f, c.driver)
			}
			if c.rootfsLine != "" && (len(f.Details) != 1 || !strings.HasSuffix(f.Details[0], filepath.Join(root, "rootfs", "overlayfs")+c.rootfsLine)) {
				t.Errorf("storage details %q, want one line ending %q", f.Details, c.rootfsLine)
			}
		})
	}
}
