package daemon

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/mountns"
)

func TestKernelInfo(t *testing.T) {
	cases := []struct {
		release string
		sysctl  string
		exists  bool
		want    bool
	}{
		{"6.1.0-18-amd64", "", false, true},
		{"3.18.0", "", false, true},
		{"4.4.0-210-generic", "", false, true},
		{"3.17.8", "", false, false},
		{"3.10.0-1160.el7.x86_64", "0", true, false},
		{"3.10.0-1160.el7.x86_64", "1", true, true},
		{"3.10.0-327.el7.x86_64", "", false, false},
		{"garbage", "", false, false},
		{"5.15.0+", "", false, true},
		{"4.18.0-305.el8.x86_64", "0", true, true},
		{"weird", "1", true, true},
	}
	for _, c := range cases {
		k := kernelInfo(c.release, c.sysctl, c.exists)
		if k.DetachesOnRmdir != c.want {
			t.Errorf("kernelInfo(%q, %q, %v) detaches = %v (%s), want %v", c.release, c.sysctl, c.exists, k.DetachesOnRmdir, k.Why, c.want)
		}
	}
}

func TestParseCommandLine(t *testing.T) {
	on, off := true, false
	cases := []struct {
		args   string
		live   *bool
		config string
		root   string
		ns     string
	}{
		{"/usr/bin/dockerd -H fd://", nil, "", "", ""},
		{"/usr/bin/dockerd --live-restore", &on, "", "", ""},
		{"dockerd --live-restore=false --data-root /home/docker_rt", &off, "", "/home/docker_rt", ""},
		{"dockerd --live-restore=true --data-root=/d --config-file=/etc/d.json", &on, "/etc/d.json", "/d", ""},
		{"dockerd -g /old --config-file /c.json", nil, "/c.json", "/old", ""},
		{"dockerd --graph /g --live-restore=maybe", nil, "", "/g", ""},
		{"dockerd --containerd-namespace=engine2 -H fd://", nil, "", "", "engine2"},
		{"dockerd --containerd-namespace engine3", nil, "", "", "engine3"},
	}
	for _, c := range cases {
		cl := parseCommandLine(strings.Fields(c.args))
		if !reflect.DeepEqual(cl.liveRestore, c.live) || cl.configFile != c.config || cl.dataRoot != c.root || cl.containerdNamespace != c.ns {
			t.Errorf("%q: live %v config %q root %q containerd namespace %q", c.args, cl.liveRestore, cl.configFile, cl.dataRoot, cl.containerdNamespace)
		}
	}
}

func TestParseDaemonConfig(t *testing.T) {
	on := true
	cases := []struct {
		name    string
		json    string
		live    *bool
		root    string
		wantErr string
	}{
		{"empty object", `{}`, nil, "", ""},
		{"live-restore on", `{"live-restore": true, "data-root": "/home/docker_rt"}`, &on, "/home/docker_rt", ""},
		{"old graph key", `{"graph": "/g"}`, nil, "/g", ""},
		{"not JSON", "{\n\"live-restore\": true,\n}", nil, "", "is not valid JSON at line 3"},
		{"live-restore a string", `{"live-restore": "yes"}`, nil, "", `"live-restore" is "yes", not true or false`},
		{"data-root a number", `{"data-root": 3}`, nil, "", `"data-root" is 3, not a path`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dc, err := parseDaemonConfig("/etc/docker/daemon.json", []byte(c.json))
			if c.wantErr != "" {
				var ie *InputError
				if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "/etc/docker/daemon.json") {
					t.Fatalf("err = %v, want an InputError naming the file and containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dc.liveRestore, c.live) || dc.dataRoot != c.root {
				t.Errorf("got live %v root %q", dc.liveRestore, dc.dataRoot)
			}
		})
	}
}

func TestLayerID(t *testing.T) {
	root := "/var/lib/docker"
	cases := []struct {
		m    mountns.Mount
		want string
	}{
		{mountns.Mount{HostPath: root + "/overlay2/3f1c/merged"}, "3f1c"},
		{mountns.Mount{UpperDir: root + "/overlay2/3f1c/diff"}, "3f1c"},
		{mountns.Mount{HostPath: "/x/merged", UpperDir: root + "/overlay2/ab/diff"}, "ab"},
		{mountns.Mount{HostPath: root + "/overlay2/3f1c/merged/proc"}, ""},
		{mountns.Mount{HostPath: root + "/containers/c1/mounts/shm"}, ""},
		{mountns.Mount{UpperDir: "/elsewhere/overlay2/x/diff"}, ""},
	}
	for _, c := range cases {
		if got := layerID(root, c.m); got != c.want {
			t.Errorf("layerID(%+v) = %q, want %q", c.m, got, c.want)
		}
	}
}
