package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DaemonSetFile is the DaemonSet manifest, relative to this directory.
const DaemonSetFile = "kubernetes/nsdetach-daemonset.yaml"

// DecodeDaemonSet decodes a manifest strictly, as the API server's strict
// field validation does: a duplicated key (YAMLToJSONStrict), an unknown
// field, or a field spelt in another case (sigs.k8s.io/json; encoding/json
// alone would take "hostPid" for hostPID) is an error.
func DecodeDaemonSet(b []byte) (*appsv1.DaemonSet, error) {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return nil, err
	}
	var ds appsv1.DaemonSet
	strict, err := kjson.UnmarshalStrict(j, &ds, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return &ds, nil
}

// ReadDaemonSet reads and strictly decodes the manifest at path.
func ReadDaemonSet(path string) (*appsv1.DaemonSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ds, err := DecodeDaemonSet(b)
	if err != nil {
		return nil, fmt.Errorf("%s does not decode strictly as a DaemonSet: %w", path, err)
	}
	return ds, nil
}

// DockerRun is the DaemonSet's pod as `docker run` runs it on one node:
// docker run [Flags...] Image [Args...].
type DockerRun struct {
	// Flags are docker run's options, one "--flag=value" per element.
	Flags []string
	// Image is the container's image, as the manifest names it.
	Image string
	// Args are the container's arguments after the image.
	Args []string
	// Port is the container port the probes use (by name in the manifest).
	Port int32
	// HealthPath is the probes' HTTP path.
	HealthPath string
}

// Argv returns Flags, Image and Args in the order docker run takes them.
func (r DockerRun) Argv() []string {
	return append(append(append([]string{}, r.Flags...), r.Image), r.Args...)
}

// DockerRunOf translates the pod spec of ds, field by field, into the
// docker run that runs it the same way: host namespaces, user,
// capabilities, security options, read-only root, the hostPath mounts with
// their propagation, the memory limit, the arguments. The data root the
// manifest mounts (its hostPath, mountPath and --root, which must agree) is
// moved to dataRoot, as an operator does for a dockerd with --data-root
// ("" keeps it).
// Fields that only matter to the scheduler or the API server are named and
// left out; any other field that is set is an error, so that a change of
// the manifest cannot go untested by the run that uses this.
func DockerRunOf(ds *appsv1.DaemonSet, dataRoot string) (DockerRun, error) {
	pod := ds.Spec.Template.Spec.DeepCopy()
	var run DockerRun
	if len(pod.Containers) != 1 || len(pod.InitContainers) > 0 || len(pod.EphemeralContainers) > 0 {
		return run, fmt.Errorf("the pod has %d containers and %d init containers: only one container is translated", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	pod.Containers = nil

	if pod.HostPID {
		run.Flags = append(run.Flags, "--pid=host")
	}
	if pod.HostIPC {
		run.Flags = append(run.Flags, "--ipc=host")
	}
	// A pod has a network namespace of its own; the probes and the
	// scrapes reach it there.
	if pod.HostNetwork {
		run.Flags = append(run.Flags, "--network=host")
	} else {
		run.Flags = append(run.Flags, "--network=none")
	}
	pod.HostPID, pod.HostIPC, pod.HostNetwork = false, false, false
	if pod.TerminationGracePeriodSeconds != nil {
		run.Flags = append(run.Flags, "--stop-timeout="+strconv.FormatInt(*pod.TerminationGracePeriodSeconds, 10))
		pod.TerminationGracePeriodSeconds = nil
	}
	// Scheduling and the API server's business, not the node's runtime.
	pod.Tolerations, pod.PriorityClassName, pod.NodeSelector, pod.Affinity = nil, "", nil, nil
	pod.AutomountServiceAccountToken = nil
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath == nil || !reflect.DeepEqual(v.VolumeSource, corev1.VolumeSource{HostPath: v.HostPath}) {
			return run, fmt.Errorf("volume %s: only hostPath volumes are translated", v.Name)
		}
		hostPaths[v.Name] = v.HostPath.Path
	}
	pod.Volumes = nil
	if err := leftOver("pod spec", *pod, corev1.PodSpec{}); err != nil {
		return run, err
	}

	run.Image, c.Image = c.Image, ""
	args := append(append([]string{}, c.Command...), c.Args...)
	if len(c.Command) > 0 {
		run.Flags = append(run.Flags, "--entrypoint="+c.Command[0])
		args = args[1:]
	}
	c.Command, c.Args, c.Name = nil, nil, ""

	root, err := dataRootOf(args, c.VolumeMounts, hostPaths)
	if err != nil {
		return run, err
	}
	if dataRoot == "" {
		dataRoot = root
	}
	move := func(p string) string {
		if p == root {
			return dataRoot
		}
		return p
	}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok && v == root {
			a = k + "=" + dataRoot
		}
		run.Args = append(run.Args, a)
	}
	for _, m := range c.VolumeMounts {
		mount := "--mount=type=bind,source=" + move(hostPaths[m.Name]) + ",target=" + move(m.MountPath)
		if m.ReadOnly {
			mount += ",readonly"
		}
		propagation := corev1.MountPropagationNone
		if m.MountPropagation != nil {
			propagation = *m.MountPropagation
		}
		switch propagation {
		case corev1.MountPropagationHostToContainer:
			mount += ",bind-propagation=rslave"
		case corev1.MountPropagationBidirectional:
			mount += ",bind-propagation=rshared"
		case corev1.MountPropagationNone:
			mount += ",bind-propagation=rprivate"
		default:
			return run, fmt.Errorf("volume mount %s: mountPropagation %q is not translated", m.Name, propagation)
		}
		if m.SubPath != "" || m.SubPathExpr != "" || m.RecursiveReadOnly != nil {
			return run, fmt.Errorf("volume mount %s: subPath and recursiveReadOnly are not translated", m.Name)
		}
		run.Flags = append(run.Flags, mount)
	}
	c.VolumeMounts = nil
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			return run, fmt.Errorf("env %s: valueFrom is not translated", e.Name)
		}
		run.Flags = append(run.Flags, "--env="+e.Name+"="+e.Value)
	}
	c.Env = nil

	if err := probes(&run, &c); err != nil {
		return run, err
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		run.Flags = append(run.Flags, "--memory="+strconv.FormatInt(mem.Value(), 10))
	}
	if cpu, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		run.Flags = append(run.Flags, "--cpus="+cpu.AsDec().String())
	}
	// Requests only place the pod.
	c.Resources = corev1.ResourceRequirements{}
	if c.SecurityContext != nil {
		flags, err := securityFlags(*c.SecurityContext)
		if err != nil {
			return run, err
		}
		run.Flags = append(run.Flags, flags...)
		c.SecurityContext = nil
	}
	return run, leftOver("container "+ds.Spec.Template.Spec.Containers[0].Name, c, corev1.Container{})
}

// dataRootOf returns the data root: the path of the one hostPath volume,
// which the container must mount at the same path and scan with --root.
func dataRootOf(args []string, mounts []corev1.VolumeMount, hostPaths map[string]string) (string, error) {
	if len(mounts) != 1 || len(hostPaths) != 1 {
		return "", fmt.Errorf("%d volume mounts of %d volumes: want only the data root", len(mounts), len(hostPaths))
	}
	host, ok := hostPaths[mounts[0].Name]
	if !ok {
		return "", fmt.Errorf("volume mount %s has no volume", mounts[0].Name)
	}
	if mounts[0].MountPath != host {
		return "", fmt.Errorf("the data root %s is mounted at %s: mountPaths in other namespaces' mount tables are host paths, so mount it at the same path", host, mounts[0].MountPath)
	}
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--root="); ok {
			if v != host {
				return "", fmt.Errorf("--root=%s, but the data root mounted is %s", v, host)
			}
			return host, nil
		}
		if a == "--root" && i+1 < len(args) {
			return "", errors.New("write --root=DIR in one argument, so that it is moved with the mount")
		}
	}
	return "", fmt.Errorf("no --root= argument: serve would scan its default, not the data root %s the pod mounts", host)
}

// probes records the probes' HTTP path and port (docker has no HTTP probe;
// the run's caller polls them) and clears what it understood.
func probes(run *DockerRun, c *corev1.Container) error {
	ports := map[string]int32{}
	for _, p := range c.Ports {
		if p.HostPort != 0 || (p.Protocol != "" && p.Protocol != corev1.ProtocolTCP) {
			return fmt.Errorf("port %s: only a TCP containerPort is translated", p.Name)
		}
		ports[p.Name] = p.ContainerPort
	}
	c.Ports = nil
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if p.HTTPGet == nil {
			return errors.New("only httpGet probes are translated")
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = ports[p.HTTPGet.Port.StrVal]
		}
		if port == 0 || (run.Port != 0 && (port != run.Port || p.HTTPGet.Path != run.HealthPath)) {
			return fmt.Errorf("probe %s on port %s: want one path on one container port", p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
		run.Port, run.HealthPath = port, p.HTTPGet.Path
	}
	c.ReadinessProbe, c.LivenessProbe, c.StartupProbe = nil, nil, nil
	return nil
}

// securityFlags translates a container's securityContext.
func securityFlags(sc corev1.SecurityContext) ([]string, error) {
	var flags []string
	if sc.RunAsUser != nil {
		flags = append(flags, "--user="+strconv.FormatInt(*sc.RunAsUser, 10))
		if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && *sc.RunAsUser == 0 {
			return nil, errors.New("runAsNonRoot with runAsUser 0: the kubelet would refuse to start it")
		}
	}
	if sc.Privileged != nil && *sc.Privileged {
		flags = append(flags, "--privileged")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		flags = append(flags, "--security-opt=no-new-privileges")
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		flags = append(flags, "--read-only")
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Drop {
			flags = append(flags, "--cap-drop="+string(c))
		}
		for _, c := range sc.Capabilities.Add {
			flags = append(flags, "--cap-add="+string(c))
		}
	}
	if p := sc.SeccompProfile; p != nil {
		switch p.Type {
		case corev1.SeccompProfileTypeRuntimeDefault: // docker's default profile
		case corev1.SeccompProfileTypeUnconfined:
			flags = append(flags, "--security-opt=seccomp=unconfined")
		default:
			return nil, fmt.Errorf("seccompProfile %s is not translated", p.Type)
		}
	}
	if p := sc.AppArmorProfile; p != nil {
		switch p.Type {
		case corev1.AppArmorProfileTypeRuntimeDefault:
		case corev1.AppArmorProfileTypeUnconfined:
			flags = append(flags, "--security-opt=apparmor=unconfined")
		default:
			return nil, fmt.Errorf("appArmorProfile %s is not translated", p.Type)
		}
	}
	sc.RunAsUser, sc.RunAsNonRoot, sc.Privileged, sc.AllowPrivilegeEscalation = nil, nil, nil, nil
	sc.ReadOnlyRootFilesystem, sc.Capabilities, sc.SeccompProfile, sc.AppArmorProfile = nil, nil, nil, nil
	return flags, leftOver("securityContext", sc, corev1.SecurityContext{})
}

// leftOver fails when v, with every translated field cleared, still has a
// field set: one that this translation does not know.
func leftOver(what string, v, zero any) error {
	if reflect.DeepEqual(v, zero) {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s has fields that are not translated", what)
	}
	return fmt.Errorf("%s has fields that are not translated to docker run: %s", what, b)
}
