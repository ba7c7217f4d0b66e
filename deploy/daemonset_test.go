package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestDockerRunOf pins the translation of the shipped manifest: the e2e run
// of the image (integration/e2e/daemonset.sh) uses exactly these arguments.
func TestDockerRunOf(t *testing.T) {
	ds, err := ReadDaemonSet(DaemonSetFile)
	if err != nil {
		t.Fatal(err)
	}
	run, err := DockerRunOf(ds, "/srv/docker")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--pid=host", "--network=none", "--stop-timeout=15",
		"--mount=type=bind,source=/srv/docker,target=/srv/docker,readonly,bind-propagation=rslave",
		"--memory=134217728", "--user=0", "--security-opt=no-new-privileges", "--read-only",
		"--cap-drop=ALL", "--cap-add=SYS_ADMIN", "--cap-add=SYS_CHROOT", "--cap-add=SYS_PTRACE",
		"--security-opt=apparmor=unconfined",
		"ghcr.io/nsdetach/nsdetach:v0.1.0",
		"serve", "--listen=:9733", "--root=/srv/docker", "--interval=1m", "--detach-stale",
	}
	if got := run.Argv(); !slices.Equal(got, want) {
		t.Errorf("docker run\n %q\nwant\n %q", got, want)
	}
	if run.Port != 9733 || run.HealthPath != "/healthz" {
		t.Errorf("probes on %d %s, want 9733 /healthz", run.Port, run.HealthPath)
	}
	if kept, err := DockerRunOf(ds, ""); err != nil || !slices.Contains(kept.Args, "--root=/var/lib/docker") {
		t.Errorf("without a data root: %v %q, want the manifest's", err, kept.Args)
	}
}

// TestDockerRunOfDrift: a change of the manifest either changes the docker
// run that tests it or fails the translation; it is never dropped.
func TestDockerRunOfDrift(t *testing.T) {
	b, err := os.ReadFile(DaemonSetFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new string
		flag           string // in the argv; "" when an error is wanted
		notFlag        string // not in the argv
		err            string
	}{
		{name: "no hostPID", old: "      hostPID: true\n", new: "      hostPID: false\n", notFlag: "--pid=host"},
		{name: "hostNetwork", old: "      hostPID: true\n", new: "      hostPID: true\n      hostNetwork: true\n", flag: "--network=host", notFlag: "--network=none"},
		{name: "private propagation", old: "mountPropagation: HostToContainer", new: "mountPropagation: None",
			flag: "--mount=type=bind,source=/d,target=/d,readonly,bind-propagation=rprivate"},
		{name: "writable root", old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false", notFlag: "--read-only"},
		{name: "privileged", old: "privileged: false", new: "privileged: true", flag: "--privileged"},
		{name: "one capability less", old: "                - SYS_PTRACE\n", new: "", notFlag: "--cap-add=SYS_PTRACE"},
		{name: "seccomp unconfined", old: "type: RuntimeDefault", new: "type: Unconfined", flag: "--security-opt=seccomp=unconfined"},
		{name: "an env var", old: "          ports:\n", new: "          env:\n            - name: A\n              value: b\n          ports:\n", flag: "--env=A=b"},
		{name: "an untranslated container field", old: "          ports:\n", new: "          stdin: true\n          ports:\n", err: `"stdin":true`},
		{name: "an untranslated pod field", old: "      hostPID: true\n", new: "      hostPID: true\n      shareProcessNamespace: true\n", err: `"shareProcessNamespace":true`},
		{name: "an untranslated security field", old: "            runAsUser: 0\n", new: "            runAsUser: 0\n            runAsGroup: 5\n", err: `"runAsGroup":5`},
		{name: "mounted elsewhere", old: "              mountPath: /var/lib/docker\n", new: "              mountPath: /host/docker\n", err: "is mounted at /host/docker"},
		{name: "scanning another root", old: "--root=/var/lib/docker", new: "--root=/srv/docker", err: "--root=/srv/docker, but the data root mounted is /var/lib/docker"},
		{name: "no --root", old: "            - --root=/var/lib/docker\n", new: "", err: "no --root= argument"},
		{name: "another volume", old: "      volumes:\n", new: "      volumes:\n        - name: cfg\n          configMap:\n            name: x\n", err: "only hostPath volumes"},
		{name: "an exec probe", old: "          livenessProbe:\n            httpGet:\n              path: /healthz\n              port: metrics\n",
			new: "          livenessProbe:\n            exec:\n              command: [/nsdetach, version]\n", err: "only httpGet probes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(string(b), c.old, c.new, 1)
			if doc == string(b) {
				t.Fatal("the manifest changed: the mutation did not apply")
			}
			ds, err := DecodeDaemonSet([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			run, err := DockerRunOf(ds, "/d")
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			argv := run.Argv()
			if c.flag != "" && !slices.Contains(argv, c.flag) {
				t.Errorf("%q lacks %s", argv, c.flag)
			}
			if c.notFlag != "" && slices.Contains(argv, c.notFlag) {
				t.Errorf("%q still has %s", argv, c.notFlag)
			}
		})
	}
}

// TestImageIsTheRelease: the DaemonSet runs the image `make image` tags,
// whose tag is VERSION (which `nsdetach version` prints too).
func TestImageIsTheRelease(t *testing.T) {
	ds, err := ReadDaemonSet(DaemonSetFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	want := "ghcr.io/nsdetach/nsdetach:" + strings.TrimSpace(string(v))
	if got := ds.Spec.Template.Spec.Containers[0].Image; got != want {
		t.Errorf("the DaemonSet runs %s; VERSION makes %s", got, want)
	}
}
