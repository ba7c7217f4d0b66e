package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDaemonSet(t *testing.T) {
	b, err := os.ReadFile(DaemonSetFile)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := DecodeDaemonSet(b)
	if err != nil {
		t.Fatalf("%s does not decode strictly as a DaemonSet: %v", DaemonSetFile, err)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion/kind = %s/%s", ds.APIVersion, ds.Kind)
	}
	pod := ds.Spec.Template.Spec
	sel := ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	if !pod.HostPID {
		t.Error("hostPID must be true: nsdetach must see every process's mount namespace")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Error("hostNetwork/hostIPC are not needed")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("no service-account token is needed")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	t.Run("runs nsdetach serve on the exported port", func(t *testing.T) {
		args := strings.Join(append(append([]string{}, c.Command...), c.Args...), " ")
		if !strings.HasPrefix(args, "serve ") || !strings.Contains(args, "--listen=:9733") || !strings.Contains(args, "--root=/var/lib/docker") {
			t.Errorf("args %q: want nsdetach serve --listen=:9733 --root=/var/lib/docker", args)
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9733 || ds.Spec.Template.Annotations["prometheus.io/port"] != "9733" {
			t.Errorf("ports %+v, annotations %v", c.Ports, ds.Spec.Template.Annotations)
		}
		for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "metrics" {
				t.Errorf("probe %+v: want GET /healthz on the metrics port", p)
			}
		}
	})

	t.Run("the privileges it needs and no more", func(t *testing.T) {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatal("no securityContext")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged must not be set")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
			t.Error("runAsUser must be 0: the capabilities act for root")
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("capabilities.drop must be [ALL]: %+v", sc.Capabilities)
		}
		add := slices.Clone(sc.Capabilities.Add)
		slices.Sort(add)
		if want := []corev1.Capability{"SYS_ADMIN", "SYS_CHROOT", "SYS_PTRACE"}; !slices.Equal(add, want) {
			t.Errorf("capabilities.add = %v, want exactly %v", add, want)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Error("seccomp must stay RuntimeDefault")
		}
	})

	t.Run("the data root follows the host's mounts", func(t *testing.T) {
		vols := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			vols[v.Name] = v
		}
		if len(c.VolumeMounts) != 1 {
			t.Fatalf("volume mounts %+v: want only the data root", c.VolumeMounts)
		}
		m := c.VolumeMounts[0]
		v, ok := vols[m.Name]
		if !ok || v.HostPath == nil || v.HostPath.Path != m.MountPath {
			t.Errorf("mount %+v: want the host's data root at the same path", m)
		}
		if !m.ReadOnly {
			t.Error("the data root needs no write access")
		}
		// HostToContainer: host unmounts reach the pod, so the pod never
		// pins a layer itself. Bidirectional would need privileged.
		if m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer {
			t.Errorf("mountPropagation %v, want HostToContainer", m.MountPropagation)
		}
	})
}

func TestDaemonSetDecodingIsStrict(t *testing.T) {
	b, err := os.ReadFile(DaemonSetFile)
	if err != nil {
		t.Fatal(err)
	}
	// The mutations anchor on the pod spec's line (the comments mention
	// the same words).
	const hostPID = "\n      hostPID: true\n"
	mutate := func(old, new string) string { return strings.Replace(string(b), old, new, 1) }
	cases := map[string]string{
		"misspelt field":   mutate(hostPID, "\n      hostPid: true\n"),
		"duplicated field": mutate(hostPID, hostPID+"      hostPID: true\n"),
		"unknown field":    mutate(hostPID, hostPID+"      hostMounts: all\n"),
		"wrong type":       mutate("\n            readOnlyRootFilesystem: true\n", "\n            readOnlyRootFilesystem: yes please\n"),
	}
	for name, doc := range cases {
		if doc == string(b) {
			t.Fatalf("%s: the manifest changed, the mutation did not apply", name)
		}
		if _, err := DecodeDaemonSet([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

func TestSystemdDropIn(t *testing.T) {
	settings := readDropIn(t, "10-nsdetach-mountflags.conf")
	if got := settings["[Service]MountFlags"]; !slices.Equal(got, []string{"shared"}) {
		t.Errorf("[Service] MountFlags = %v, want [shared]", got)
	}
	if len(settings) != 1 {
		t.Errorf("settings %v: the drop-in should change MountFlags only", settings)
	}
}

func TestSystemdRejoinDropIn(t *testing.T) {
	settings := readDropIn(t, "20-nsdetach-rejoin.conf")
	// An empty ExecStart= first clears the unit's own, which a drop-in must
	// do before it sets another for a Type=notify service.
	got := settings["[Service]ExecStart"]
	if len(got) != 2 || got[0] != "" || !strings.HasPrefix(got[1], "/usr/local/bin/nsdetach rejoin -- /") {
		t.Errorf("[Service] ExecStart = %q, want the unit's cleared, then nsdetach rejoin -- DOCKERD", got)
	}
	if len(settings) != 1 {
		t.Errorf("settings %v: the drop-in should change ExecStart only (it keeps MountFlags)", settings)
	}
}

// readDropIn parses a drop-in of systemd/docker.service.d into
// "[Section]Key" -> values, in order.
func readDropIn(t *testing.T, name string) map[string][]string {
	t.Helper()
	path := filepath.Join("systemd", "docker.service.d", name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	section, settings := "", map[string][]string{}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		l := strings.TrimSpace(lines.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Errorf("%s: not a setting in a section: %q", path, l)
				continue
			}
			settings[section+k] = append(settings[section+k], v)
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return settings
}
