package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nsdetach/nsdetach/internal/paths"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/pkg/errors"
)

// DefaultContainerdNamespace is the containerd namespace of dockerd's
// containers when its command line does not name one
// (--containerd-namespace).
const DefaultContainerdNamespace = "moby"

// RejoinConfig describes the dockerd that is about to start.
type RejoinConfig struct {
	// Args is dockerd's command line, program first.
	Args []string
	// DataRoot is dockerd's data root, in the caller's view. Empty: the
	// --data-root of Args, else the "data-root" of the daemon.json that Args
	// name (--config-file) or of /etc/docker/daemon.json, else
	// /var/lib/docker.
	DataRoot string
	// ContainerdNamespace is the containerd namespace of the engine's
	// containers. Empty: --containerd-namespace of Args, else moby.
	ContainerdNamespace string
	// HostPID is the process whose mount namespace is the host's initial one,
	// which is never rejoined; 0 means pid 1, or this process when pid 1's
	// namespace cannot be read.
	HostPID int
	// ShimBinaries are the engine's containerd shim executables, in the
	// caller's view. A process counts as a shim only when it runs one of
	// these files (same device and inode); its name and flags prove
	// nothing, since anything a container runs can take them. Empty: the
	// files named containerd-shim-runc-v2, containerd-shim-runc-v1,
	// containerd-shim or docker-containerd-shim in PATH and in DOCKERD's
	// directory.
	ShimBinaries []string
	// Options go to the scan of the data root (mountns.FindHolders).
	Options []mountns.Option
}

// RejoinNamespace is a mount namespace with processes that look like
// containerd shims of the engine.
type RejoinNamespace struct {
	mountns.Namespace
	// Shims are the pids of the engine's containerd shims in it: processes
	// that run a shim binary of the caller's view, in the caller's pid
	// namespace, on the caller's root directory.
	Shims []int `json:"shims"`
	// Impostors are the processes named and flagged like shims of the
	// engine that are not provably its shims, each with why.
	Impostors []string `json:"impostors,omitempty"`
	// Mounts is how many mounts below the data root it holds.
	Mounts int `json:"mounts"`
	// Root is where its root directory lies in the caller's view ("/" for
	// the engine's namespaces, elsewhere for a container's); empty when it
	// has no place there or it holds nothing below the data root.
	Root string `json:"root,omitempty"`
	// Skipped says why it is not a candidate; empty for a candidate.
	Skipped string `json:"skipped,omitempty"`
}

// RejoinDecision is where a dockerd about to start should run.
type RejoinDecision struct {
	// Rejoin is true when exactly one candidate was found: dockerd should
	// start in Target.
	Rejoin bool             `json:"rejoin"`
	Target *RejoinNamespace `json:"target,omitempty"`
	// Reason says, in one line, why dockerd starts where it does.
	Reason string `json:"reason"`
	// Own is the caller's mount namespace inode: where dockerd starts when
	// it does not rejoin.
	Own uint64 `json:"own_namespace"`
	// Host is the host's initial mount namespace inode, read from HostPID;
	// HostNote says why another process than pid 1 was used, if one was.
	Host     uint64 `json:"host_namespace"`
	HostPID  int    `json:"host_pid"`
	HostNote string `json:"host_note,omitempty"`
	// UserNamespace is the caller's user namespace inode: a namespace that
	// another user namespace owns (one an unprivileged user may have made)
	// is never joined.
	UserNamespace uint64 `json:"user_namespace"`
	DataRoot      string `json:"data_root"`
	// ContainerdNamespace is the containerd namespace whose shims count.
	ContainerdNamespace string `json:"containerd_namespace"`
	// Candidates are the namespaces, other than the caller's and the
	// host's, that hold mounts below the data root and the engine's shims.
	Candidates []RejoinNamespace `json:"candidates"`
	// Skipped are the other namespaces with shims of the engine, and why
	// each is not a candidate.
	Skipped []RejoinNamespace `json:"skipped,omitempty"`

	// proof is what the candidate's shims were checked against; ExecRejoin
	// checks them again after it opened the namespace.
	proof *shimProof
}

// DecideRejoin finds the mount namespace that holds the mounts of the
// previous dockerd: the one namespace, other than the caller's and the
// host's initial one, that holds mounts below the data root and is kept
// alive by containerd shims of the engine's containerd namespace. Under
// systemd's MountFlags=slave every dockerd start gets a new namespace while
// live-restore keeps the containers' shims, and with them the old namespace
// and every mount in it, alive; a dockerd started in that old namespace
// finds its mounts where it left them, and nothing leaks.
//
// Zero candidates (first start, or no live containers) and more than one
// (which of them would be a guess) both give Rejoin false, with the reason.
// A data root that does not exist yet is a first start, not an error. It
// reads /proc and every namespace's mount table once and changes nothing.
func DecideRejoin(ctx context.Context, cfg RejoinConfig) (RejoinDecision, error) {
	cl := parseCommandLine(cfg.Args)
	d := RejoinDecision{ContainerdNamespace: firstOf(cfg.ContainerdNamespace, cl.containerdNamespace, DefaultContainerdNamespace)}
	root, err := rejoinDataRoot(cfg, cl)
	if err != nil {
		return d, err
	}
	d.DataRoot = root
	if d.Own, err = procfs.MountNamespace(os.Getpid()); err != nil {
		return d, errors.Wrap(err, "reading this process's mount namespace")
	}
	if d.UserNamespace, err = userNamespace(); err != nil {
		return d, errors.Wrap(err, "reading this process's user namespace")
	}
	d.HostPID = cfg.HostPID
	if d.HostPID == 0 {
		d.HostPID = 1
	}
	if d.Host, err = procfs.MountNamespace(d.HostPID); err != nil {
		d.HostNote = fmt.Sprintf("pid %d's mount namespace is unreadable (%v): this process's counts as the host's", d.HostPID, err)
		d.HostPID, d.Host = os.Getpid(), d.Own
	}

	d.proof, err = newShimProof(shimBinaries(cfg))
	if err != nil {
		return d, err
	}
	shims := findShims(d.ContainerdNamespace, d.proof)
	if len(shims) == 0 {
		d.Reason = fmt.Sprintf("no containerd shim of containerd namespace %s runs: nothing to rejoin (first start, or no live containers); starting in this namespace mnt:[%d]", d.ContainerdNamespace, d.Own)
		return d, nil
	}
	real, err := filepath.EvalSymlinks(root)
	if os.IsNotExist(err) {
		d.Reason = fmt.Sprintf("data root %s does not exist: nothing to rejoin (first start); starting in this namespace mnt:[%d]", root, d.Own)
		return d, nil
	}
	if err != nil {
		return d, &InputError{What: "--root", Value: root, Err: err}
	}
	held := map[uint64]int{}
	holderByIno := map[uint64]mountns.Holder{}
	holders, err := mountns.FindHolders(ctx, real, cfg.Options...)
	if err != nil {
		return d, errors.Wrapf(err, "scanning mounts under %s", real)
	}
	for _, h := range holders {
		holderByIno[h.Inode] = h
		for _, m := range h.Mounts {
			if below(real, m) {
				held[h.Inode]++
			}
		}
	}

	inos := make([]uint64, 0, len(shims))
	for ino := range shims {
		inos = append(inos, ino)
	}
	sort.Slice(inos, func(i, j int) bool { return inos[i] < inos[j] })
	for _, ino := range inos {
		h, ok := holderByIno[ino]
		if !ok {
			h.Namespace = mountns.Namespace{Inode: ino, PIDs: shims[ino].all()}
		}
		rn := RejoinNamespace{Namespace: h.Namespace, Shims: shims[ino].proven, Impostors: shims[ino].impostors, Mounts: held[ino], Root: h.Root}
		switch {
		case ino == d.Own:
			rn.Skipped = "this process's own namespace: dockerd starts here anyway"
		case ino == d.Host:
			rn.Skipped = fmt.Sprintf("the host's initial mount namespace (pid %d's): never rejoined", d.HostPID)
		case rn.Mounts == 0:
			rn.Skipped = "holds no mount below " + real
		default:
			rn.Skipped = strings.Join(d.refusals(h, rn, real), "; ")
		}
		if rn.Skipped != "" {
			d.Skipped = append(d.Skipped, rn)
		} else {
			d.Candidates = append(d.Candidates, rn)
		}
	}
	d.decide(real)
	return d, nil
}

// refusals are the reasons why a namespace that holds mounts below the data
// root (h, as FindHolders saw it) is not the engine's, each from a rule of its
// own, so that one rule missing a case does not decide alone; none for a
// candidate. A container's namespace fails the first three, and the
// processes a root user inside it names and flags like shims fail the
// shim checks whatever binary they run.
func (d *RejoinDecision) refusals(h mountns.Holder, rn RejoinNamespace, root string) []string {
	var why []string
	for _, m := range h.Mounts {
		if m.HolderRoot {
			why = append(why, fmt.Sprintf("its root directory is mount %d (%s) below %s: a container's root filesystem", m.ID, m.FSType, root))
			break
		}
	}
	switch {
	case h.Root == "":
		why = append(why, "its root directory has no place in this process's view: a container's namespace")
	case paths.Within(h.Root, root):
		why = append(why, fmt.Sprintf("its root directory lies below %s (at %q): a container's namespace", root, h.Root))
	case h.Root != "/":
		why = append(why, fmt.Sprintf("its root directory is %q, not this process's /: a container's namespace", h.Root))
	}
	if len(rn.Shims) == 0 {
		why = append(why, "no process in it is provably a shim of the engine: "+shortList(rn.Impostors))
	} else {
		owner, err := namespaceOwner(rn.Shims[0])
		switch {
		case err != nil:
			why = append(why, fmt.Sprintf("its owning user namespace cannot be read (%v)", err))
		case owner != d.UserNamespace:
			why = append(why, fmt.Sprintf("owned by user namespace user:[%d], not this process's user:[%d]", owner, d.UserNamespace))
		}
	}
	if len(why) > 0 {
		why[len(why)-1] += ": never joined"
	}
	return why
}

// shortList joins the first two items and says how many more there are.
func shortList(items []string) string {
	if len(items) > 2 {
		return strings.Join(items[:2], "; ") + fmt.Sprintf(" (+%d more)", len(items)-2)
	}
	return strings.Join(items, "; ")
}

// decide sets Rejoin, Target and Reason from the candidates.
func (d *RejoinDecision) decide(root string) {
	var skipped []string
	for _, s := range d.Skipped {
		skipped = append(skipped, fmt.Sprintf("mnt:[%d] (%s)", s.Inode, s.Skipped))
	}
	also := ""
	if len(skipped) > 0 {
		also = "; skipped " + strings.Join(skipped, ", ")
	}
	switch len(d.Candidates) {
	case 0:
		d.Reason = fmt.Sprintf("no other mount namespace holds mounts below %s and containerd shims of namespace %s%s: nothing to rejoin; starting in this namespace mnt:[%d]",
			root, d.ContainerdNamespace, also, d.Own)
	case 1:
		c := d.Candidates[0]
		d.Rejoin, d.Target = true, &c
		d.Reason = fmt.Sprintf("rejoining mnt:[%d]: the only mount namespace other than this one (mnt:[%d]) and the host's (mnt:[%d]) that holds mounts below %s (%d) and containerd shims of namespace %s (pids %s)%s",
			c.Inode, d.Own, d.Host, root, c.Mounts, d.ContainerdNamespace, pidList(c.Shims), also)
	default:
		var cs []string
		for _, c := range d.Candidates {
			cs = append(cs, fmt.Sprintf("mnt:[%d] (%d mounts, shim pids %s)", c.Inode, c.Mounts, pidList(c.Shims)))
		}
		d.Reason = fmt.Sprintf("not rejoining: %d mount namespaces hold mounts below %s and containerd shims of namespace %s, %s, and which one the last dockerd used would be a guess; starting in this namespace mnt:[%d] (nsdetach scan --root %s lists the leaks)",
			len(d.Candidates), root, d.ContainerdNamespace, strings.Join(cs, ", "), d.Own, root)
	}
}

// rejoinDataRoot is the data root: the config's, dockerd's --data-root,
// daemon.json's, or the default.
func rejoinDataRoot(cfg RejoinConfig, cl commandLine) (string, error) {
	root := firstOf(cfg.DataRoot, cl.dataRoot)
	if root == "" {
		name := firstOf(cl.configFile, DefaultConfigFile)
		b, err := os.ReadFile(name)
		switch {
		case err == nil:
			dc, err := parseDaemonConfig(name, b)
			if err != nil {
				return "", err
			}
			root = dc.dataRoot
		case !os.IsNotExist(err) || cl.configFile != "":
			return "", &InputError{What: "daemon config", Value: name, Reason: err.Error() + ": pass the data root with --root", Err: err}
		}
	}
	root = firstOf(root, DefaultDataRoot)
	if !filepath.IsAbs(root) || root == "/" {
		return "", &InputError{What: "--root", Value: strconv.Quote(root), Reason: "not an absolute path below /: give dockerd's data root"}
	}
	return filepath.Clean(root), nil
}

// below tells whether a mount lies below root (its place, or an overlay's
// upperdir); the data root's own mount (dockerd bind-mounts it onto itself,
// or it is a disk of its own) is in every namespace and does not count.
func below(root string, m mountns.Mount) bool {
	return paths.Below(m.HostPath, root) || paths.Below(m.UpperDir, root)
}

// shimsIn are the processes of one mount namespace that look like shims of
// the engine: those that provably are, and why each other one is not.
type shimsIn struct {
	proven    []int
	impostors []string
	pids      []int
}

func (s shimsIn) all() []int { return s.pids }

// findShims maps mount namespace inode to the processes in it named and
// flagged like containerd shims of containerd namespace ns, each checked
// against proof.
func findShims(ns string, proof *shimProof) map[uint64]shimsIn {
	out := map[uint64]shimsIn{}
	names, _ := filepath.Glob("/proc/[0-9]*")
	for _, n := range names {
		pid, err := strconv.Atoi(filepath.Base(n))
		if err != nil || !isShimOf(pid, ns) {
			continue
		}
		ino, err := procfs.MountNamespace(pid)
		if err != nil {
			continue // exited
		}
		s := out[ino]
		s.pids = append(s.pids, pid)
		if why := proof.check(pid); why != "" {
			s.impostors = append(s.impostors, fmt.Sprintf("pid %d %s", pid, why))
		} else {
			s.proven = append(s.proven, pid)
		}
		out[ino] = s
	}
	for _, s := range out {
		sort.Ints(s.pids)
		sort.Ints(s.proven)
	}
	return out
}

// isShimOf tells whether pid is a containerd shim of containerd namespace ns.
func isShimOf(pid int, ns string) bool {
	comm, err := procfs.Comm(pid)
	if err != nil || !shimCommand(comm) {
		return false
	}
	args, err := readCommandLine(pid)
	return err == nil && len(args) > 0 && strings.Contains(filepath.Base(args[0]), "containerd-shim") && shimNamespace(args) == ns
}

// shimCommand tells whether a command name (/proc/PID/comm, at most 15
// bytes) can be a containerd shim: containerd-shim, containerd-shim-runc-v2,
// or the docker-containerd-shim of Docker 17.x/18.x.
func shimCommand(comm string) bool {
	return strings.HasPrefix(comm, "containerd-shim") || comm == "docker-containe"
}

// shimNamespace reads a shim's -namespace flag (Go flag syntax: -namespace
// moby, --namespace=moby).
func shimNamespace(args []string) string {
	for i := 1; i < len(args) && args[i] != "--"; i++ {
		name, value, ok := strings.Cut(args[i], "=")
		if name != "-namespace" && name != "--namespace" {
			continue
		}
		if ok {
			return value
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func pidList(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ",")
}

// RejoinDropInPath is where the systemd drop-in that starts dockerd through
// nsdetach rejoin goes (deploy/systemd in this repository).
const RejoinDropInPath = "/etc/systemd/system/docker.service.d/20-nsdetach-rejoin.conf"

// rejoinFix is the shell commands that install the rejoin drop-in for the
// dockerd running as pid with command line args.
func rejoinFix(args []string, pid int) string {
	if len(args) > 0 && !filepath.IsAbs(args[0]) {
		// systemd wants an absolute path; the kernel knows dockerd's.
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil && filepath.IsAbs(exe) {
			args = append([]string{exe}, args[1:]...)
		}
	}
	line := "ExecStart=/usr/local/bin/nsdetach rejoin --"
	for _, a := range args {
		line += " " + systemdQuote(a)
	}
	return fmt.Sprintf("mkdir -p %s\nprintf '%%s\\n' '[Service]' 'ExecStart=' %s > %s\nsystemctl daemon-reload && systemctl restart docker",
		filepath.Dir(RejoinDropInPath), shellQuote(line), RejoinDropInPath)
}

// RejoinEnv is the variable ExecRejoin puts in dockerd's environment: the
// mark by which doctor knows that this dockerd, and so each restart of it,
// was started by nsdetach rejoin. Its value says where it started.
const RejoinEnv = "NSDETACH_REJOIN"

// systemdQuote writes one argument of an ExecStart= line: specifiers (%) and
// variables ($) escaped, and double quotes around one with blanks, quotes or
// backslashes.
func systemdQuote(a string) string {
	a = strings.NewReplacer("%", "%%", "$", "$$").Replace(a)
	if a != "" && !strings.ContainsAny(a, " \t\"'\\") {
		return a
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
}

// shellQuote single-quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
