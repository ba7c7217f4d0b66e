package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
)

// DoctorConfig says which daemon to examine. Zero values mean "find out".
type DoctorConfig struct {
	// PID is dockerd's pid; 0 looks for the one process whose command
	// (/proc/PID/comm) is dockerd.
	PID int
	// ConfigFile is dockerd's daemon.json, in the caller's view. Empty: the
	// file named by dockerd's --config-file, else /etc/docker/daemon.json,
	// both read through dockerd's own root (/proc/PID/root), so a caller in a
	// container sees the host's file. A missing default file means defaults.
	ConfigFile string
	// DataRoot is dockerd's data root, in the caller's view. Empty: dockerd's
	// --data-root, else daemon.json's "data-root", else /var/lib/docker.
	DataRoot string
	// HostPID is the process whose mount namespace is the host's; 0 means
	// pid 1, or the caller when pid 1's namespace cannot be read.
	HostPID int
	// Options go to the leak scan (mountns.FindHolders).
	Options []mountns.Option
}

// Status grades a finding.
type Status string

// Statuses of a Finding.
const (
	StatusOK      Status = "ok"
	StatusInfo    Status = "info"
	StatusWarning Status = "warning"
	StatusProblem Status = "problem"
)

// Finding is one thing Doctor checked.
type Finding struct {
	// Check names what was checked: "dockerd", "mount-namespace",
	// "live-restore", "kernel", "leaks".
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Summary says what was found.
	Summary string `json:"summary"`
	// Details are supporting lines (one per leaking namespace, ...).
	Details []string `json:"details,omitempty"`
	// Why says, in one sentence, why it matters; empty when all is well.
	Why string `json:"why,omitempty"`
	// Fix is the exact command or configuration that fixes it, ready to
	// paste; empty when all is well.
	Fix string `json:"fix,omitempty"`
}

// Diagnosis is what Doctor found about one dockerd.
type Diagnosis struct {
	DockerdPID     int       `json:"dockerd_pid"`
	DockerdStarted time.Time `json:"dockerd_started,omitempty"`
	// DockerdNamespace and HostNamespace are mount namespace inodes.
	DockerdNamespace uint64 `json:"dockerd_namespace"`
	HostPID          int    `json:"host_pid"`
	HostNamespace    uint64 `json:"host_namespace"`
	// HostNote says why the host's namespace was taken from another process
	// than pid 1, if it was.
	HostNote string `json:"host_note,omitempty"`
	// Propagation is that of dockerd's root mount: shared, slave or private.
	Propagation string `json:"propagation"`
	// SharesHostMounts is true when dockerd's root mount is in the peer
	// group of the host's (MountFlags=shared): its own namespace then leaks
	// nothing, since mounts and unmounts propagate both ways.
	SharesHostMounts bool `json:"shares_host_mounts"`
	// Rejoin is the RejoinEnv value in dockerd's environment: set when
	// nsdetach rejoin started it, so that each restart rejoins the namespace
	// of its live containers' mounts.
	Rejoin      string `json:"rejoin,omitempty"`
	LiveRestore bool   `json:"live_restore"`
	// LiveRestoreFrom says where LiveRestore came from: "command line",
	// the config file's path, or "default".
	LiveRestoreFrom string `json:"live_restore_from"`
	// ConfigFile is the daemon.json read, "" when there was none.
	ConfigFile string     `json:"config_file,omitempty"`
	DataRoot   string     `json:"data_root"`
	Kernel     KernelInfo `json:"kernel"`
	// Leaks is the leak scan of the data root from dockerd's point of view;
	// nil when the data root was not found.
	Leaks *LeakScan `json:"leaks,omitempty"`
	// Storage is the storage mode: graphdriver or containerd snapshotter.
	Storage  Storage   `json:"storage"`
	Findings []Finding `json:"findings"`
}

// NeedsAction reports whether some finding is a warning or a problem.
func (d Diagnosis) NeedsAction() bool {
	for _, f := range d.Findings {
		if f.Status == StatusWarning || f.Status == StatusProblem {
			return true
		}
	}
	return false
}

// DropInPath is where the systemd drop-in that removes the MountFlags=slave
// hazard goes (deploy/systemd in this repository).
const DropInPath = "/etc/systemd/system/docker.service.d/10-nsdetach-mountflags.conf"

// Doctor examines a running dockerd: its mount namespace against the host's,
// live-restore, the kernel's rmdir behaviour and the mounts under its data
// root that leaked into other namespaces, and says how to fix each finding.
// Bad input (a pid that is not dockerd, a config file that is not JSON, a
// DataRoot that does not exist) is an *InputError; nothing is changed either
// way.
func Doctor(ctx context.Context, cfg DoctorConfig) (Diagnosis, error) {
	var d Diagnosis
	pid, err := findDockerd(cfg.PID)
	if err != nil {
		return d, err
	}
	d.DockerdPID = pid
	if ps := processes([]int{pid}); len(ps) == 1 {
		d.DockerdStarted = ps[0].Started
	}
	args, err := readCommandLine(pid)
	if err != nil {
		return d, errors.Wrap(err, "reading dockerd's command line")
	}
	cl := parseCommandLine(args)
	d.Findings = append(d.Findings, Finding{Check: "dockerd", Status: StatusInfo,
		Summary: fmt.Sprintf("dockerd pid %d, started %s: %s", pid, when(d.DockerdStarted), strings.Join(args, " "))})

	dc, err := readDaemonConfig(&d, cfg, cl, pid)
	if err != nil {
		return d, err
	}
	if err := namespaceFinding(&d, cfg); err != nil {
		return d, err
	}
	liveRestoreFinding(&d, cl, dc)

	d.Kernel = readKernel()
	kernelFinding(&d)

	explicitRoot := cfg.DataRoot != ""
	d.DataRoot = firstOf(cfg.DataRoot, cl.dataRoot, dc.dataRoot, DefaultDataRoot)
	scan, err := FindLeaks(ctx, d.DataRoot, pid, cfg.Options...)
	var ie *InputError
	switch {
	case err == nil:
		d.Leaks = &scan
		leaksFinding(&d)
	case errors.As(err, &ie) && !explicitRoot:
		d.Findings = append(d.Findings, Finding{Check: "leaks", Status: StatusWarning,
			Summary: fmt.Sprintf("data root %s: %s; leaks were not looked for", d.DataRoot, ie.Reason),
			Why:     "leaked mounts can only be found under the daemon's data root.",
			Fix:     "nsdetach doctor --root /path/to/data-root"})
	default:
		return d, err
	}
	d.Storage = readStorage(cl, dc, readEnviron(pid), d.DataRoot)
	storageFinding(&d)
	return d, nil
}

// findDockerd checks that pid is dockerd, or finds the one dockerd.
func findDockerd(pid int) (int, error) {
	if pid != 0 {
		c, err := procfs.Comm(pid)
		if err != nil {
			return 0, &InputError{What: "--pid", Value: strconv.Itoa(pid), Reason: "no such process: pass dockerd's pid (pidof dockerd)"}
		}
		if c != "dockerd" {
			return 0, &InputError{What: "--pid", Value: strconv.Itoa(pid), Reason: fmt.Sprintf("is %q, not dockerd: pass dockerd's pid (pidof dockerd)", c)}
		}
		return pid, nil
	}
	var found []int
	pids, _ := procfs.PIDs()
	for _, p := range pids {
		if c, err := procfs.Comm(p); err == nil && c == "dockerd" {
			found = append(found, p)
		}
	}
	sort.Ints(found)
	switch len(found) {
	case 0:
		return 0, &InputError{What: "dockerd", Value: "(no --pid given)", Reason: "no process named dockerd runs here: start dockerd, or pass its pid with --pid"}
	case 1:
		return found[0], nil
	}
	return 0, &InputError{What: "dockerd", Value: "(no --pid given)", Reason: fmt.Sprintf("%d processes are named dockerd (pids %v): pass the one to examine with --pid", len(found), found)}
}

// readDaemonConfig reads daemon.json: the caller's file as given, or
// dockerd's own (its --config-file or the default) through its root.
func readDaemonConfig(d *Diagnosis, cfg DoctorConfig, cl commandLine, pid int) (daemonConfig, error) {
	name, path, explicit := cfg.ConfigFile, cfg.ConfigFile, cfg.ConfigFile != ""
	if !explicit {
		name = firstOf(cl.configFile, DefaultConfigFile)
		path = name
		if filepath.IsAbs(name) {
			path = "/proc/" + strconv.Itoa(pid) + "/root" + name
		}
		explicit = cl.configFile != ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && !explicit {
			return daemonConfig{}, nil // dockerd runs with defaults
		}
		return daemonConfig{}, &InputError{What: "daemon config", Value: name, Reason: err.Error() + ": pass dockerd's daemon.json with --config", Err: err}
	}
	d.ConfigFile = name
	return parseDaemonConfig(name, b)
}

func namespaceFinding(d *Diagnosis, cfg DoctorConfig) error {
	var err error
	if d.DockerdNamespace, err = procfs.MountNamespace(d.DockerdPID); err != nil {
		return errors.Wrap(err, "reading dockerd's mount namespace")
	}
	d.HostPID = cfg.HostPID
	if d.HostPID == 0 {
		d.HostPID = 1
	}
	if d.HostNamespace, err = procfs.MountNamespace(d.HostPID); err != nil {
		d.HostNote = fmt.Sprintf("pid %d's mount namespace is unreadable (%v): compared with nsdetach's own namespace instead; run nsdetach as root in the host's pid namespace for a sure answer", d.HostPID, err)
		d.HostPID = os.Getpid()
		if d.HostNamespace, err = procfs.MountNamespace(d.HostPID); err != nil {
			return errors.Wrap(err, "reading nsdetach's own mount namespace")
		}
	}
	d.Propagation = rootPropagation(d.DockerdPID)
	f := Finding{Check: "mount-namespace"}
	if d.HostNote != "" {
		f.Details = append(f.Details, d.HostNote)
	}
	if d.DockerdNamespace == d.HostNamespace {
		f.Status = StatusOK
		f.Summary = fmt.Sprintf("dockerd runs in the host's mount namespace mnt:[%d] (root mount %s)", d.HostNamespace, d.Propagation)
		d.Findings = append(d.Findings, f)
		return nil
	}
	// A namespace of its own is the hazard only when mounts stay in it: an
	// older systemd (219) makes one for MountFlags=shared too (252 does
	// not), and nsdetach rejoin starts each dockerd in the namespace its
	// live containers' mounts are in.
	if group := rootPeerGroup(d.DockerdPID); group != "" && group == rootPeerGroup(d.HostPID) {
		d.SharesHostMounts = true
		f.Status = StatusOK
		f.Summary = fmt.Sprintf("dockerd runs in mount namespace mnt:[%d], whose root mount is in the peer group of the host's (mnt:[%d], pid %d; %s): mounts and unmounts propagate both ways, so a restart leaks nothing (MountFlags=shared)",
			d.DockerdNamespace, d.HostNamespace, d.HostPID, group)
		d.Findings = append(d.Findings, f)
		return nil
	}
	if d.Rejoin = environValue(d.DockerdPID, RejoinEnv); d.Rejoin != "" {
		f.Status = StatusOK
		f.Summary = fmt.Sprintf("dockerd runs in mount namespace mnt:[%d], not the host's mnt:[%d] (pid %d), root mount %s, started by nsdetach rejoin (%s): each start rejoins the namespace of the live containers' mounts",
			d.DockerdNamespace, d.HostNamespace, d.HostPID, d.Propagation, d.Rejoin)
		d.Findings = append(d.Findings, f)
		return nil
	}
	f.Status = StatusWarning
	f.Summary = fmt.Sprintf("dockerd runs in mount namespace mnt:[%d], not the host's mnt:[%d] (pid %d), and its root mount is %s: the MountFlags=slave symptom",
		d.DockerdNamespace, d.HostNamespace, d.HostPID, d.Propagation)
	f.Why = "every dockerd start gets a new mount namespace, so mounts made before a restart stay in the old one for as long as any process (a containerd shim) lives there, and the restarted daemon cannot unmount them."
	f.Fix = fmt.Sprintf(`mkdir -p %s
printf '[Service]\nMountFlags=shared\n' > %s
systemctl daemon-reload && systemctl restart docker
# check: systemctl show docker -p MountFlags; readlink /proc/1/ns/mnt /proc/$(pidof dockerd)/ns/mnt
# (not started by systemd? start dockerd without unshare -m / a private namespace)`, filepath.Dir(DropInPath), DropInPath)
	d.Findings = append(d.Findings, f)
	return nil
}

func liveRestoreFinding(d *Diagnosis, cl commandLine, dc daemonConfig) {
	switch {
	case cl.liveRestore != nil:
		d.LiveRestore, d.LiveRestoreFrom = *cl.liveRestore, "command line"
	case dc.liveRestore != nil:
		d.LiveRestore, d.LiveRestoreFrom = *dc.liveRestore, d.ConfigFile
	default:
		d.LiveRestoreFrom = "default"
	}
	f := Finding{Check: "live-restore", Status: StatusOK}
	state := "off"
	if d.LiveRestore {
		state = "on"
	}
	f.Summary = fmt.Sprintf("live-restore is %s (%s)", state, d.LiveRestoreFrom)
	if d.LiveRestore && d.DockerdNamespace != d.HostNamespace && !d.SharesHostMounts && d.Rejoin == "" {
		f.Status = StatusProblem
		f.Summary += ", with dockerd in a namespace of its own: the incident's combination"
		f.Why = "live-restore keeps the containerd shims of a restarted daemon alive, and they pin the old mount namespace with every overlay in it, so `docker rm` of those containers fails with \"device or resource busy\" on kernels that do not detach on rmdir."
		f.Fix = fmt.Sprintf("# keep live-restore, and either fix MountFlags (see mount-namespace above), or keep MountFlags=slave and\n"+
			"# start dockerd through nsdetach rejoin, which rejoins the namespace its live containers' mounts are in:\n%s\n"+
			"# only if containers may restart with the daemon, turn live-restore off instead: set \"live-restore\": false in %s and restart docker",
			rejoinFix(cl.args, d.DockerdPID), firstOf(d.ConfigFile, DefaultConfigFile))
	}
	d.Findings = append(d.Findings, f)
}

func kernelFinding(d *Diagnosis) {
	k := d.Kernel
	f := Finding{Check: "kernel", Summary: fmt.Sprintf("kernel %s: ", k.Release)}
	if k.DetachesOnRmdir {
		f.Status = StatusOK
		f.Summary += "rmdir detaches mounts of other namespaces (" + k.Why + ")"
		d.Findings = append(d.Findings, f)
		return
	}
	f.Status = StatusProblem
	f.Summary += "rmdir of a directory mounted in another namespace fails with EBUSY (" + k.Why + ")"
	f.Why = "every leaked copy of a container's overlay then makes `docker rm` fail and leaves the container in \"Removal In Progress\"."
	if k.MayDetachMounts != "" {
		f.Fix = "sysctl -w fs.may_detach_mounts=1\necho 'fs.may_detach_mounts = 1' > /etc/sysctl.d/99-nsdetach.conf"
	} else {
		f.Fix = "upgrade to a kernel >= 3.18 (or a RHEL/CentOS 7.4+ kernel and fs.may_detach_mounts=1); until then run `nsdetach detach --root " + firstOf(d.DataRoot, DefaultDataRoot) + " --stale-only` after each dockerd restart"
	}
	d.Findings = append(d.Findings, f)
}

func leaksFinding(d *Diagnosis) {
	s := d.Leaks
	n := s.Count()
	f := Finding{Check: "leaks"}
	for _, ns := range s.Namespaces {
		var stale, pinned int
		for _, l := range ns.Leaks {
			switch {
			case l.InUse:
			case l.Verdict == Stale:
				stale++
			default:
				pinned++
			}
		}
		if stale+pinned == 0 {
			continue
		}
		var ps []string
		for _, p := range ns.Processes {
			ps = append(ps, fmt.Sprintf("%d %s (started %s)", p.PID, p.Command, when(p.Started)))
		}
		f.Details = append(f.Details, fmt.Sprintf("mnt:[%d]: %d stale, %d pinned; processes: %s", ns.Inode, stale, pinned, strings.Join(ps, ", ")))
	}
	switch {
	case n[Stale] > 0:
		f.Status = StatusProblem
		f.Summary = fmt.Sprintf("%d stale and %d pinned leaked mounts under %s, in %d namespaces other than dockerd's", n[Stale], n[Pinned], s.Root, len(f.Details))
		f.Why = "a stale leak keeps a removed container's overlay alive: it blocks `docker rm` on kernels without detach-on-rmdir and double-mounts the upperdir after a restart elsewhere."
		f.Fix = "nsdetach detach --root " + s.Root + " --stale-only"
	case n[Pinned] > 0:
		f.Status = StatusWarning
		f.Summary = fmt.Sprintf("%d leaked copies of running containers' mounts under %s, in %d namespaces other than dockerd's", n[Pinned], s.Root, len(f.Details))
		f.Why = "each copy outlives its container and will block the container's removal; detaching a copy now is harmless, the container keeps its own mount."
		f.Fix = "nsdetach detach --root " + s.Root
	default:
		f.Status = StatusOK
		f.Summary = fmt.Sprintf("no mount under %s leaked into another namespace (%d namespaces scanned)", s.Root, s.Scanned)
	}
	d.Findings = append(d.Findings, f)
}

// rootPeerGroup returns the shared:N field of pid's root mount, "" when it
// is not shared or cannot be read.
func rootPeerGroup(pid int) string {
	if root := rootMount(pid); root != nil {
		for _, o := range strings.Fields(root.Optional) {
			if strings.HasPrefix(o, "shared:") {
				return o
			}
		}
	}
	return ""
}

// rootPropagation reads the propagation of pid's root mount from its
// mountinfo optional fields: shared:N, master:N (slave), or none (private).
func rootPropagation(pid int) string {
	root := rootMount(pid)
	if root == nil {
		return "unknown"
	}
	var kinds []string
	for _, o := range strings.Fields(root.Optional) {
		switch {
		case strings.HasPrefix(o, "shared:"):
			kinds = append(kinds, "shared")
		case strings.HasPrefix(o, "master:"):
			kinds = append(kinds, "slave")
		}
	}
	if len(kinds) == 0 {
		return "private"
	}
	return strings.Join(kinds, "+")
}

// rootMount returns pid's visible root mount (the last one on "/"), nil when
// its mount table cannot be read.
func rootMount(pid int) *mountinfo.Info {
	infos, err := pidTable(pid, 0)
	if err != nil {
		return nil
	}
	var root *mountinfo.Info
	for _, m := range infos {
		if m.Mountpoint == "/" {
			root = m
		}
	}
	return root
}

// environValue returns the value of variable name in pid's environment, ""
// when it is not set or the environment cannot be read.
func environValue(pid int, name string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func when(t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}
