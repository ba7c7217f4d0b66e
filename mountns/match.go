package mountns

import (
	"path"
	"strings"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/paths"
)

// Mount is one mount of a holder's namespace that matched a target.
type Mount struct {
	// ID is the mount id in the holder's namespace (mountinfo field 1).
	// The kernel reuses it once the mount is gone.
	ID int `json:"mount_id"`
	// UniqueID is the mount's 64-bit id, never reused (statx
	// STATX_MNT_ID_UNIQUE through the holder's root at scan time); 0 on
	// kernels before 6.8 or when the scan could not reach the mount point.
	UniqueID uint64 `json:"mount_unique_id,omitempty"`
	// Major and Minor are the mounted filesystem's st_dev (mountinfo field 3).
	Major int `json:"major"`
	Minor int `json:"minor"`
	// Mountpoint is the mount point as the holder sees it, relative to the
	// viewing process's root (mountinfo field 5, unescaped).
	Mountpoint string `json:"mountpoint"`
	// HostPath is Mountpoint translated into the caller's view: through the
	// holder's root, or, when that has no place in the caller's view (the
	// caller runs in a container with the data root bind-mounted in), through
	// the place where the holder shows the target's directory (same device,
	// same directory inside it). Empty when neither places it or the mount
	// point was deleted.
	HostPath string `json:"host_path,omitempty"`
	// FSType is the filesystem type (mountinfo field 9).
	FSType string `json:"fstype"`
	// Source is the mount source (mountinfo field 10).
	Source string `json:"source"`
	// UpperDir is the overlay upperdir= option, a path in the host's view
	// whatever the holder's root; empty for other filesystems.
	UpperDir string `json:"upperdir,omitempty"`
	// MatchedBy says why the mount matched.
	MatchedBy MatchedBy `json:"matched_by"`
	// HolderRoot is true when the mount is the root directory ("/") of a
	// process of the holder: a live process runs on it, so it is never
	// detached. The root of a namespace that no process is in (pinned by an
	// fd or a bind mount, or kept a moment past its last process by another
	// reader) is not: nothing runs on it.
	HolderRoot bool `json:"holder_root,omitempty"`
}

// MatchedBy is why a mount matched a target.
type MatchedBy string

// Reasons of Mount.MatchedBy.
const (
	// MatchedByPath: the mount's HostPath is at or below the target.
	MatchedByPath MatchedBy = "path"
	// MatchedByUpperDir: an overlay whose upper or work directory is the
	// target's (an overlay of the target's layer, wherever it is mounted).
	MatchedByUpperDir MatchedBy = "upperdir"
)

// placeRoot finds where a holder's root directory lies in the caller's view,
// so that the holder's mount points can be translated. holder and caller are
// the two mount tables; linkRoot is readlink(/proc/PID/root) of the viewing
// process ("" when unknown). It returns the caller-view path of the holder's
// root and whether one was found.
//
// The holder's "/" entry names the filesystem (major:minor) and the directory
// inside it (Root) that the holder's root is; a caller mount of the same
// filesystem whose Root contains that directory places it. A chrooted holder
// has no "/" entry (the mounts above its root are hidden from it): then the
// root link places it, once checkLinkRoot has shown that the link names the
// same directory in the caller's view (it is "" otherwise).
func placeRoot(holder, caller []*mountinfo.Info, linkRoot string) (string, bool) {
	var rootEntry *mountinfo.Info
	for _, m := range holder {
		if m.Mountpoint == "/" {
			rootEntry = m // the last one is on top
		}
	}
	if rootEntry == nil {
		if path.IsAbs(linkRoot) && !strings.HasSuffix(linkRoot, "(deleted)") {
			return path.Clean(linkRoot), true
		}
		return "", false
	}
	best := -1
	for i, m := range caller {
		if m.Major != rootEntry.Major || m.Minor != rootEntry.Minor || !paths.Within(rootEntry.Root, m.Root) {
			continue
		}
		if best < 0 || len(m.Root) > len(caller[best].Root) ||
			(len(m.Root) == len(caller[best].Root) && len(m.Mountpoint) < len(caller[best].Mountpoint)) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	o := caller[best]
	return path.Join(o.Mountpoint, strings.TrimPrefix(rootEntry.Root, o.Root)), true
}

// view translates a holder's mount points into the caller's view: a mount
// point at or below holder (a path in the holder's view) lies at caller plus
// the rest. A holder whose root has a place in the caller's view translates
// every mount point (holder "/"); one whose root has none may still show the
// target's directory somewhere (targetViews), and translates only below it.
type view struct{ holder, caller string }

// rootView is the view of a holder whose root lies at prefix in the
// caller's view.
func rootView(prefix string) []view { return []view{{holder: "/", caller: prefix}} }

// hostPath translates a holder's mount point into the caller's view; "" when
// no view covers it or it was deleted.
func hostPath(views []view, mountpoint string) string {
	if !path.IsAbs(mountpoint) || strings.HasSuffix(mountpoint, "//deleted") {
		return ""
	}
	for _, v := range views {
		if paths.Within(mountpoint, v.holder) {
			return path.Join(v.caller, strings.TrimPrefix(mountpoint, v.holder))
		}
	}
	return ""
}

// location is a directory named by filesystem rather than by path: the
// device (major:minor) and the path inside that filesystem (mountinfo's
// Root field is one).
type location struct {
	major, minor int
	fsPath       string
}

// targetViews finds where the target's directory lies in a holder's view
// whose root has no place in the caller's, by filesystem identity: the
// target is some directory of some filesystem in the caller's view (the
// directory its path resolves to, or the root of a mount stacked on it);
// a mount of the holder with the same device whose Root contains that
// directory shows it at its mount point plus the rest. That place counts
// only when the holder's own path walk reaches it through that very mount,
// so nothing mounted over the way, in the holder's view, can stand in for
// the target. holder and caller are whole tables (every line).
//
// A caller whose "/" is not the host's (a container with the data root
// bind-mounted in, at the same path or not) cannot place the root of a
// holder whose "/" is the host's, yet both have the data root's filesystem.
func targetViews(holder, caller []*mountinfo.Info, target string) []view {
	var out []view
	for _, loc := range locations(caller, target) {
		for _, h := range holder {
			if h.Major != loc.major || h.Minor != loc.minor || !cleanAbs(h.Root) || !paths.Within(loc.fsPath, h.Root) || !cleanAbs(h.Mountpoint) {
				continue
			}
			q := path.Join(h.Mountpoint, strings.TrimPrefix(loc.fsPath, h.Root))
			if !reaches(holder, q, h) {
				continue
			}
			v := view{holder: q, caller: target}
			if !containsView(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

func containsView(vs []view, v view) bool {
	for _, w := range vs {
		if w == v {
			return true
		}
	}
	return false
}

// cleanAbs tells whether p is an absolute, clean path: Root and mount point
// fields can also be "//deleted" paths or other odd data.
func cleanAbs(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && !strings.HasSuffix(p, "//deleted")
}

// locations returns what the directory at p is in a view, by filesystem:
// the directory that the mount beneath p has there, then the root of each
// mount stacked at p, bottom first. nil when the table has no root mount.
func locations(t []*mountinfo.Info, p string) []location {
	var out []location
	ch := walk(t, p)
	for i, m := range ch {
		if !cleanAbs(m.Root) {
			continue
		}
		switch {
		case m.Mountpoint == p:
			out = append(out, location{m.Major, m.Minor, m.Root})
		case i == len(ch)-1 || ch[i+1].Mountpoint == p:
			out = append(out, location{m.Major, m.Minor, path.Join(m.Root, strings.TrimPrefix(p, m.Mountpoint))})
		}
	}
	return out
}

// reaches tells whether resolving q in a view goes through mount h: h is
// the mount beneath q or one stacked at q.
func reaches(t []*mountinfo.Info, q string, h *mountinfo.Info) bool {
	ch := walk(t, q)
	for i, m := range ch {
		if m == h {
			return m.Mountpoint == q || i == len(ch)-1 || ch[i+1].Mountpoint == q
		}
	}
	return false
}

// walk returns the mounts that resolving the clean absolute path p passes
// through in a view, in order: the root mount (the "/" entry whose parent
// is not in the table) and the mounts stacked on it, then, for each leading
// part of p, the child mount there and those stacked on it. A mount counts
// only as a child of the mount it was mounted on (mountinfo's parent id), so
// one hidden by a mount made over a directory above it is not on the way.
// nil when the table has no root mount (a chrooted view).
func walk(t []*mountinfo.Info, p string) []*mountinfo.Info {
	ids := make(map[int]bool, len(t))
	for _, m := range t {
		ids[m.ID] = true
	}
	var root *mountinfo.Info
	children := make(map[int][]*mountinfo.Info)
	for _, m := range t {
		if m.Mountpoint == "/" && (!ids[m.Parent] || m.Parent == m.ID) && root == nil {
			root = m
		} else {
			children[m.Parent] = append(children[m.Parent], m)
		}
	}
	if root == nil {
		return nil
	}
	seen := map[*mountinfo.Info]bool{}
	ch := []*mountinfo.Info{root}
	cur := root
	// top follows the mounts made at q on top of cur; the later in the
	// table is on top when a mount has several children there.
	top := func(q string) {
		for {
			var next *mountinfo.Info
			for _, c := range children[cur.ID] {
				if c.Mountpoint == q && !seen[c] {
					next = c
				}
			}
			if next == nil {
				return
			}
			seen[next] = true
			ch = append(ch, next)
			cur = next
		}
	}
	seen[root] = true
	top("/")
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			top(p[:i])
		}
	}
	return ch
}

// overlayDirs returns the upperdir= and workdir= values of an overlay's
// super options, unescaped (the kernel escapes ',', '=', whitespace and '\'
// as octal there).
func overlayDirs(superOptions string) (upper, work string) {
	for _, opt := range splitOptions(superOptions) {
		switch {
		case strings.HasPrefix(opt, "upperdir="):
			upper = unescapeOctal(strings.TrimPrefix(opt, "upperdir="))
		case strings.HasPrefix(opt, "workdir="):
			work = unescapeOctal(strings.TrimPrefix(opt, "workdir="))
		}
	}
	return upper, work
}

// splitOptions splits on commas that are not escaped with a backslash.
func splitOptions(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescapeOctal turns the kernel's \ooo escapes (and overlay's \, escapes)
// back into bytes.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && isOctal(s[i+1:]) {
			b = append(b, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
			continue
		}
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b = append(b, s[i])
	}
	return string(b)
}

func isOctal(s string) bool {
	if len(s) < 3 || s[0] > '3' {
		return false
	}
	for _, c := range s[:3] {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// matcher decides which mounts of a table belong to a target path.
type matcher struct {
	target string
	// uppers are overlay upperdirs known to be the target's: seen on a mount
	// that matched by path, or named by the storage layout (WithUpperDirOf).
	uppers map[string]bool
}

// newMatcher matches target; upperDirOf, if not nil, names the upper
// directory that the storage layout gives target.
func newMatcher(target string, upperDirOf func(string) string) *matcher {
	m := &matcher{target: target, uppers: make(map[string]bool)}
	if upperDirOf != nil {
		if upper := upperDirOf(target); upper != "" {
			m.uppers[upper] = true
		}
	}
	return m
}

// learn records the upperdirs of overlays that match by path in t.
func (m *matcher) learn(t []*mountinfo.Info, views []view) {
	for _, e := range t {
		if e.FSType != "overlay" {
			continue
		}
		if hp := hostPath(views, e.Mountpoint); hp != "" && paths.Within(hp, m.target) {
			if upper, _ := overlayDirs(e.VFSOptions); upper != "" {
				m.uppers[upper] = true
			}
		}
	}
}

// match returns the mounts of t that are the target or below it.
func (m *matcher) match(t []*mountinfo.Info, views []view) []Mount {
	var out []Mount
	for _, e := range t {
		mt := Mount{
			ID: e.ID, Major: e.Major, Minor: e.Minor,
			Mountpoint: e.Mountpoint, FSType: e.FSType, Source: e.Source,
			HostPath:   hostPath(views, e.Mountpoint),
			HolderRoot: e.Mountpoint == "/",
		}
		if mt.HostPath != "" && paths.Within(mt.HostPath, m.target) {
			mt.MatchedBy = MatchedByPath
		}
		if e.FSType == "overlay" {
			upper, work := overlayDirs(e.VFSOptions)
			mt.UpperDir = upper
			if mt.MatchedBy == "" && (m.uppers[upper] ||
				(upper != "" && paths.Within(upper, m.target)) || (work != "" && paths.Within(work, m.target))) {
				mt.MatchedBy = MatchedByUpperDir
			}
		}
		if mt.MatchedBy != "" {
			out = append(out, mt)
		}
	}
	return out
}
