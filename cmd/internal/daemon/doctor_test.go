package daemon_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/cmd/internal/daemon"
	"github.com/nsdetach/nsdetach/internal/nstest"
	"golang.org/x/sys/unix"
)

func TestDoctor(t *testing.T) {
	nstest.RequireRoot(t)
	type env struct {
		dir, root, config string
	}
	cases := []struct {
		name string
		// args are the fake dockerd's arguments; %ROOT% and %CONFIG% are
		// replaced.
		args []string
		// config is daemon.json's content ("" for none).
		config string
		// configFlag passes the file as DoctorConfig.ConfigFile.
		configFlag bool
		// sameNS makes dockerd's namespace count as the host's.
		sameNS bool
		// sharedRoot starts dockerd in a namespace whose root mount is in
		// the host's peer group, as MountFlags=shared does.
		sharedRoot bool
		// rejoin is the NSDETACH_REJOIN value in dockerd's environment, as
		// nsdetach rejoin leaves it ("" for none).
		rejoin string
		// leak leaves a stale overlay under the root in an old namespace.
		leak bool
		want map[string]daemon.Status
		// liveFrom is where live-restore should be read from.
		liveFrom string
	}{
		{
			name: "the incident: slave namespace, live-restore on the command line, a stale leak",
			args: []string{"--live-restore", "--data-root", "%ROOT%"},
			leak: true,
			want: map[string]daemon.Status{"mount-namespace": daemon.StatusWarning, "live-restore": daemon.StatusProblem,
				"kernel": daemon.StatusOK, "leaks": daemon.StatusProblem, "dockerd": daemon.StatusInfo},
			liveFrom: "command line",
		},
		{
			name:   "own namespace, live-restore off in daemon.json given with --config",
			args:   []string{"--data-root=%ROOT%"},
			config: `{"live-restore": false}`, configFlag: true,
			want:     map[string]daemon.Status{"mount-namespace": daemon.StatusWarning, "live-restore": daemon.StatusOK, "leaks": daemon.StatusOK},
			liveFrom: "%CONFIG%",
		},
		{
			name:       "own namespace in the host's peer group (MountFlags=shared), live-restore on",
			args:       []string{"--live-restore", "--data-root", "%ROOT%"},
			sharedRoot: true,
			want:       map[string]daemon.Status{"mount-namespace": daemon.StatusOK, "live-restore": daemon.StatusOK, "leaks": daemon.StatusOK},
			liveFrom:   "command line",
		},
		{
			name:     "own private namespace, started by nsdetach rejoin, live-restore on",
			args:     []string{"--live-restore", "--data-root", "%ROOT%"},
			rejoin:   "joined mnt:[4026532000]",
			want:     map[string]daemon.Status{"mount-namespace": daemon.StatusOK, "live-restore": daemon.StatusOK, "leaks": daemon.StatusOK},
			liveFrom: "command line",
		},
		{
			name:     "host namespace, live-restore and data-root from dockerd's --config-file",
			args:     []string{"--config-file", "%CONFIG%"},
			config:   `{"live-restore": true, "data-root": "%ROOT%"}`,
			sameNS:   true,
			want:     map[string]daemon.Status{"mount-namespace": daemon.StatusOK, "live-restore": daemon.StatusOK, "leaks": daemon.StatusOK},
			liveFrom: "%CONFIG%",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := nstest.Dir(t)
			e := env{dir: dir, root: filepath.Join(dir, "docker"), config: filepath.Join(dir, "daemon.json")}
			fill := func(s string) string {
				return strings.NewReplacer("%ROOT%", e.root, "%CONFIG%", e.config).Replace(s)
			}
			mkdirs(t, e.root)
			if c.config != "" {
				if err := os.WriteFile(e.config, []byte(fill(c.config)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if c.leak {
				o := layer(t, e.root, "dead")
				nstest.StartHolder(t, nstest.HolderSpec{})
				forget(t, o.Merged)
			}
			var args []string
			for _, a := range c.args {
				args = append(args, fill(a))
			}
			if c.sharedRoot {
				// The test's own namespace stands for the host's, whose
				// root systemd makes shared; undone when the test ends.
				if err := unix.Mount("", "/", "", unix.MS_SHARED, ""); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if err := unix.Mount("", "/", "", unix.MS_PRIVATE, ""); err != nil {
						t.Error(err)
					}
				})
			}
			if c.rejoin != "" {
				t.Setenv(daemon.RejoinEnv, c.rejoin)
			}
			dockerd := nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd", Args: args, KeepPropagation: c.sharedRoot})
			if dockerd.Namespace == mustNamespace(t, os.Getpid()) {
				t.Fatal("the fake dockerd runs in the test's mount namespace")
			}
			cfg := daemon.DoctorConfig{PID: dockerd.PID, HostPID: os.Getpid()}
			if c.sameNS {
				cfg.HostPID = dockerd.PID
			}
			if c.configFlag {
				cfg.ConfigFile = e.config
			}
			d, err := daemon.Doctor(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]daemon.Finding{}
			for _, f := range d.Findings {
				got[f.Check] = f
				if (f.Status == daemon.StatusWarning || f.Status == daemon.StatusProblem) && (f.Why == "" || f.Fix == "") {
					t.Errorf("finding %s is %s but says no why or fix: %+v", f.Check, f.Status, f)
				}
			}
			for check, st := range c.want {
				if got[check].Status != st {
					t.Errorf("%s: %s (%s), want %s", check, got[check].Status, got[check].Summary, st)
				}
			}
			if d.DataRoot != e.root {
				t.Errorf("data root %q, want %q", d.DataRoot, e.root)
			}
			if d.LiveRestoreFrom != fill(c.liveFrom) {
				t.Errorf("live-restore from %q, want %q", d.LiveRestoreFrom, fill(c.liveFrom))
			}
			if f := got["mount-namespace"]; f.Status == daemon.StatusWarning && !strings.Contains(f.Fix, "MountFlags=shared") {
				t.Errorf("mount-namespace fix does not give the drop-in: %q", f.Fix)
			}
			if f := got["live-restore"]; f.Status == daemon.StatusProblem && !strings.Contains(f.Fix, "ExecStart=/usr/local/bin/nsdetach rejoin -- ") {
				t.Errorf("live-restore fix does not offer nsdetach rejoin: %q", f.Fix)
			}
			if d.SharesHostMounts != c.sharedRoot || d.Rejoin != c.rejoin {
				t.Errorf("shares host mounts %v, rejoin %q; want %v, %q", d.SharesHostMounts, d.Rejoin, c.sharedRoot, c.rejoin)
			}
			if c.leak {
				if f := got["leaks"]; !strings.Contains(f.Fix, "nsdetach detach --root "+e.root+" --stale-only") || len(f.Details) != 1 {
					t.Errorf("leaks finding: %+v", f)
				}
			}
			if d.NeedsAction() != (c.want["mount-namespace"] != daemon.StatusOK || c.leak) {
				t.Errorf("NeedsAction = %v", d.NeedsAction())
			}
		})
	}
}

func TestDoctorBadInput(t *testing.T) {
	nstest.RequireRoot(t)
	dir := nstest.Dir(t)
	root := filepath.Join(dir, "docker")
	mkdirs(t, root)
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"live-restore": true,}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerd := nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd", Args: []string{"--data-root", root}})
	notDockerd := nstest.StartHolder(t, nstest.HolderSpec{})
	cases := []struct {
		name string
		cfg  daemon.DoctorConfig
		what string
		says string
	}{
		{"a pid that is not dockerd", daemon.DoctorConfig{PID: notDockerd.PID}, "--pid", "not dockerd"},
		{"a pid that does not exist", daemon.DoctorConfig{PID: 1 << 30}, "--pid", "no such process"},
		{"daemon.json that is not JSON", daemon.DoctorConfig{PID: dockerd.PID, ConfigFile: bad}, "daemon config", "is not valid JSON at line 1"},
		{"a missing --config", daemon.DoctorConfig{PID: dockerd.PID, ConfigFile: filepath.Join(dir, "none.json")}, "daemon config", "no such file"},
		{"a missing --root", daemon.DoctorConfig{PID: dockerd.PID, DataRoot: filepath.Join(dir, "nope")}, "--root", "does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := daemon.Doctor(context.Background(), c.cfg)
			var ie *daemon.InputError
			if !errors.As(err, &ie) || ie.What != c.what || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("err = %v, want an InputError for %s saying %q", err, c.what, c.says)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestDoctorHostUnreadable(t *testing.T) {
	nstest.RequireRoot(t)
	root := filepath.Join(nstest.Dir(t), "docker")
	mkdirs(t, root)
	dockerd := nstest.StartHolder(t, nstest.HolderSpec{Comm: "dockerd", Args: []string{"--data-root", root}})
	d, err := daemon.Doctor(context.Background(), daemon.DoctorConfig{PID: dockerd.PID, HostPID: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if d.HostPID != os.Getpid() || !strings.Contains(d.HostNote, "pid "+strconv.Itoa(1<<30)+"'s mount namespace is unreadable") {
		t.Errorf("host pid %d, note %q", d.HostPID, d.HostNote)
	}
}

// mustNamespace returns pid's mount namespace inode.
func mustNamespace(t *testing.T, pid int) uint64 {
	t.Helper()
	ino, err := nstest.NamespaceOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}
