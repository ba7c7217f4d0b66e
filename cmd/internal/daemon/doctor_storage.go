package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nsdetach/nsdetach/internal/paths"
)

// Storage modes of a Storage.
const (
	// ModeGraphdriver: images and container layers in a graphdriver
	// (<data root>/overlay2 and the like), the only mode before Engine 29.
	ModeGraphdriver = "graphdriver"
	// ModeSnapshotter: the containerd image store, the default of a fresh
	// Engine 29 install: layers are containerd snapshots, and dockerd mounts
	// each container's rootfs at <data root>/rootfs/<snapshotter>/<container id>.
	ModeSnapshotter = "snapshotter"
)

// Storage is how dockerd stores images and container layers, as far as its
// configuration and its data root tell.
type Storage struct {
	// Mode is ModeGraphdriver or ModeSnapshotter.
	Mode string `json:"mode"`
	// Driver is the graphdriver (overlay2) or the containerd snapshotter
	// (overlayfs).
	Driver string `json:"driver"`
	// From says which evidence decided: a flag, daemon.json, the data root's
	// layout or the engine's default.
	From string `json:"from"`
	// RootfsDir is <data root>/rootfs/<snapshotter> in snapshotter mode: where
	// dockerd mounts container rootfs, the directory whose mounts leak.
	RootfsDir string `json:"rootfs_dir,omitempty"`
}

// snapshotterFeature is dockerd's feature flag for the containerd image store
// (--feature containerd-snapshotter[=bool], daemon.json "features").
const snapshotterFeature = "containerd-snapshotter"

// DefaultSnapshotter is the snapshotter Engine 29 uses on Linux when none is
// configured.
const DefaultSnapshotter = "overlayfs"

// graphdrivers are the names moby registers as graphdrivers on Linux: a
// storage driver by one of these names is a graphdriver, any other name a
// containerd snapshotter.
var graphdrivers = map[string]bool{
	"overlay2": true, "fuse-overlayfs": true, "btrfs": true, "zfs": true, "vfs": true,
	"aufs": true, "devicemapper": true, "overlay": true,
}

// readStorage decides dockerd's storage mode the way Engine 29 does
// (daemon/image_store_choice.go): the containerd-snapshotter feature when set
// (command line over daemon.json); else a graphdriver when the data root
// already holds a graphdriver's state (a non-empty <root>/overlay2, ...; vfs
// does not count); else the storage driver, when one is set, by its name;
// else the containerd image store with the overlayfs snapshotter. Engines
// before 29 default to a graphdriver: on those the last rule is wrong, but
// their data root has the graphdriver's directory as soon as they ran once,
// which the second rule catches. env is dockerd's environment (DOCKER_DRIVER).
func readStorage(cl commandLine, dc daemonConfig, env map[string]string, root string) Storage {
	driver, driverFrom := cl.storageDriver, "--storage-driver on dockerd's command line"
	if v := env["DOCKER_DRIVER"]; v != "" {
		driver, driverFrom = v, "DOCKER_DRIVER in dockerd's environment"
	}
	if driver == "" && dc.storageDriver != "" {
		driver, driverFrom = dc.storageDriver, `"storage-driver" in daemon.json`
	}
	s := Storage{Mode: ModeSnapshotter}
	feature, featureFrom := cl.features[snapshotterFeature], "--feature "+snapshotterFeature+" on dockerd's command line"
	if feature == nil {
		feature, featureFrom = dc.features[snapshotterFeature], `"features": {"`+snapshotterFeature+`"} in daemon.json`
	}
	prior := priorGraphdrivers(root)
	switch {
	case feature != nil && !*feature:
		s.Mode, s.From = ModeGraphdriver, featureFrom+" is false"
		s.Driver = firstOf(driver, firstOf(prior...), "overlay2")
	case feature != nil:
		s.From = featureFrom + " is true"
		s.Driver = driver
		if graphdrivers[driver] {
			s.Driver = "" // moby falls back to its default snapshotter
		}
	case len(prior) > 0:
		s.Mode, s.Driver = ModeGraphdriver, firstOf(driver, prior[0])
		s.From = fmt.Sprintf("the data root holds graphdriver state (%s), which Engine 29 keeps using", filepath.Join(root, prior[0]))
	case driver != "" && graphdrivers[driver]:
		s.Mode, s.Driver, s.From = ModeGraphdriver, driver, driverFrom+" names a graphdriver"
	case driver != "":
		s.Driver, s.From = driver, driverFrom+" names a containerd snapshotter"
	default:
		s.From = "no storage configured and no graphdriver state in the data root: Engine 29's default (engines before 29 use overlay2)"
	}
	if s.Mode == ModeSnapshotter {
		s.Driver = firstOf(s.Driver, DefaultSnapshotter)
		s.RootfsDir = filepath.Join(root, "rootfs", s.Driver)
	}
	return s
}

// priorGraphdrivers lists the graphdrivers whose directory under root is
// not empty (moby's graphdriver.HasPriorDriver; vfs does not count), in
// moby's order of priority. An unreadable directory counts, as in moby.
func priorGraphdrivers(root string) []string {
	var out []string
	for _, d := range []string{"overlay2", "fuse-overlayfs", "btrfs", "zfs", "aufs", "devicemapper", "overlay"} {
		entries, err := os.ReadDir(filepath.Join(root, d))
		switch {
		case err == nil && len(entries) == 0, os.IsNotExist(err):
		default:
			out = append(out, d)
		}
	}
	return out
}

// readEnviron reads /proc/PID/environ into a map; an unreadable one is empty.
func readEnviron(pid int) map[string]string {
	env := map[string]string{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return env
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// storageFinding reports d.Storage, and in snapshotter mode what the leak
// scan found under the snapshotter's rootfs directory.
func storageFinding(d *Diagnosis) {
	s := d.Storage
	f := Finding{Check: "storage", Status: StatusInfo}
	switch s.Mode {
	case ModeSnapshotter:
		f.Summary = fmt.Sprintf("containerd image store, snapshotter %s (%s): container rootfs are mounted at %s/<container id>", s.Driver, s.From, s.RootfsDir)
	default:
		f.Summary = fmt.Sprintf("graphdriver %s (%s): container layers are mounted at %s/<layer id>/merged", s.Driver, s.From, filepath.Join(d.DataRoot, s.Driver))
	}
	for _, dir := range rootfsDirs(d.DataRoot) {
		line := "snapshotter rootfs directory " + dir
		if d.Leaks != nil {
			n := map[Verdict]int{}
			for _, ns := range d.Leaks.Namespaces {
				for _, l := range ns.Leaks {
					if !l.InUse && l.HostPath != "" && paths.Within(l.HostPath, dir) {
						n[l.Verdict]++
					}
				}
			}
			line += fmt.Sprintf(": %d stale and %d pinned leaked container rootfs mounts in other namespaces", n[Stale], n[Pinned])
		}
		f.Details = append(f.Details, line)
	}
	d.Findings = append(d.Findings, f)
}

// rootfsDirs lists the directories under <root>/rootfs: one per snapshotter
// the containerd image store has mounted a container's rootfs with.
func rootfsDirs(root string) []string {
	entries, err := os.ReadDir(filepath.Join(root, "rootfs"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(root, "rootfs", e.Name()))
		}
	}
	sort.Strings(out)
	return out
}
