package mountns

import (
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/nsdetach/nsdetach/internal/paths"
)

func TestOverlayDirs(t *testing.T) {
	cases := []struct{ opts, upper, work string }{
		{"rw,lowerdir=/l,upperdir=/d/diff,workdir=/d/work", "/d/diff", "/d/work"},
		{"rw,lowerdir=/a\\,b:/c,upperdir=/sp\\040ace/diff,workdir=/w", "/sp ace/diff", "/w"},
		{"rw,upperdir=/t\\011ab,workdir=/x\\134y", "/t\tab", "/x\\y"},
		{"rw,size=64k", "", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		u, w := overlayDirs(c.opts)
		if u != c.upper || w != c.work {
			t.Errorf("overlayDirs(%q) = %q, %q; want %q, %q", c.opts, u, w, c.upper, c.work)
		}
	}
}

func TestPlaceRoot(t *testing.T) {
	caller := []*mountinfo.Info{
		{Major: 254, Minor: 0, Root: "/", Mountpoint: "/"},
		{Major: 0, Minor: 30, Root: "/", Mountpoint: "/tmp"},
		{Major: 0, Minor: 40, Root: "/sub", Mountpoint: "/srv/bind"},
	}
	cases := []struct {
		name     string
		holder   []*mountinfo.Info
		linkRoot string
		want     string
		ok       bool
	}{
		{"same root", []*mountinfo.Info{{Major: 254, Root: "/", Mountpoint: "/"}}, "/", "/", true},
		{"pivoted into a dir of /", []*mountinfo.Info{{Major: 254, Root: "/var/rootfs", Mountpoint: "/"}}, "/", "/var/rootfs", true},
		{"pivoted into a dir of /tmp", []*mountinfo.Info{{Major: 0, Minor: 30, Root: "/x/rootfs", Mountpoint: "/"}}, "/", "/tmp/x/rootfs", true},
		{"pivoted into a bind root", []*mountinfo.Info{{Major: 0, Minor: 40, Root: "/sub/r", Mountpoint: "/"}}, "/", "/srv/bind/r", true},
		{"root not visible here", []*mountinfo.Info{{Major: 0, Minor: 99, Root: "/", Mountpoint: "/"}}, "/", "", false},
		{"chrooted: no / entry", []*mountinfo.Info{{Major: 0, Minor: 30, Root: "/", Mountpoint: "/data"}}, "/tmp/jail", "/tmp/jail", true},
		{"chrooted into a deleted dir", nil, "/tmp/jail (deleted)", "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := placeRoot(c.holder, caller, c.linkRoot)
			if got != c.want || ok != c.ok {
				t.Errorf("placeRoot = %q, %v; want %q, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	target := "/d/overlay2/abc/merged"
	table := []*mountinfo.Info{
		{ID: 1, Mountpoint: "/", FSType: "ext4"},
		{ID: 2, Mountpoint: "/d/overlay2/abc/merged", FSType: "overlay", VFSOptions: "rw,upperdir=/d/overlay2/abc/diff,workdir=/d/overlay2/abc/work"},
		{ID: 3, Mountpoint: "/d/overlay2/abc/merged/proc", FSType: "proc"},
		{ID: 4, Mountpoint: "/d/overlay2/abcd/merged", FSType: "overlay", VFSOptions: "rw,upperdir=/d/overlay2/abcd/diff,workdir=/d/overlay2/abcd/work"},
		{ID: 5, Mountpoint: "/elsewhere", FSType: "overlay", VFSOptions: "rw,upperdir=/d/overlay2/abc/diff,workdir=/d/overlay2/abc/work"},
		{ID: 6, Mountpoint: "/d/overlay2/abc/merged//deleted", FSType: "tmpfs"},
	}
	got := map[int]MatchedBy{}
	for _, m := range newMatcher(target, overlay2UpperDirOf).match(table, rootView("/")) {
		got[m.ID] = m.MatchedBy
	}
	want := map[int]MatchedBy{2: MatchedByPath, 3: MatchedByPath, 5: MatchedByUpperDir}
	if len(got) != len(want) {
		t.Fatalf("matched %v, want %v", got, want)
	}
	for id, by := range want {
		if got[id] != by {
			t.Errorf("mount %d matched by %q, want %q", id, got[id], by)
		}
	}
}

func TestTargetViews(t *testing.T) {
	const data = "/tmp/e2e/data"
	// info is one mountinfo line: id, parent, device, Root, mount point.
	info := func(id, parent, major, minor int, root, mp string) *mountinfo.Info {
		return &mountinfo.Info{ID: id, Parent: parent, Major: major, Minor: minor, Root: root, Mountpoint: mp}
	}
	// A container's view: its own overlay as "/", the data root's directory
	// of the host's disk (254:0) bind-mounted in at the same path.
	pod := []*mountinfo.Info{info(1, 0, 0, 50, "/", "/"), info(2, 1, 254, 0, data, data)}
	// The engine's old namespace: the host's disk as "/", a leaked tmpfs.
	host := []*mountinfo.Info{info(26, 1, 254, 0, "/", "/"), info(90, 26, 0, 60, "/", data+"/containers/c/mounts/shm")}
	cases := []struct {
		name           string
		holder, caller []*mountinfo.Info
		target         string
		want           []view
	}{
		{"data root bound in at the same path", host, pod, data, []view{{data, data}}},
		{"a path below the data root", host, pod, data + "/containers/c",
			[]view{{data + "/containers/c", data + "/containers/c"}}},
		{"data root bound in elsewhere", host,
			[]*mountinfo.Info{info(1, 0, 0, 50, "/", "/"), info(2, 1, 254, 0, data, "/data")}, "/data",
			[]view{{data, "/data"}}},
		{"the holder shows the data root below a bind of its parent",
			[]*mountinfo.Info{info(1, 0, 0, 70, "/", "/"), info(2, 1, 254, 0, "/tmp/e2e", "/host")}, pod, data,
			[]view{{"/host/data", data}}},
		{"data root on a disk of its own",
			[]*mountinfo.Info{info(26, 1, 254, 0, "/", "/"), info(27, 26, 8, 16, "/", "/var/lib/docker")},
			[]*mountinfo.Info{info(1, 0, 0, 50, "/", "/"), info(2, 1, 8, 16, "/", "/var/lib/docker")}, "/var/lib/docker",
			[]view{{"/var/lib/docker", "/var/lib/docker"}}},
		{"a mount of the caller stacked on the target", host,
			[]*mountinfo.Info{info(1, 0, 0, 50, "/", "/"), info(2, 1, 254, 0, data, data), info(3, 2, 0, 80, "/", data)}, data,
			[]view{{data, data}}},
		{"the holder hides the path under a tmpfs of its own",
			[]*mountinfo.Info{info(26, 1, 254, 0, "/", "/"), info(40, 26, 0, 61, "/", "/tmp"), info(90, 40, 0, 60, "/", data+"/containers/c/mounts/shm")},
			pod, data, nil},
		{"the holder has a filesystem of its own mounted on the target", // mounted on the target: still its place
			[]*mountinfo.Info{info(26, 1, 254, 0, "/", "/"), info(40, 26, 0, 61, "/", data)}, pod, data, []view{{data, data}}},
		{"the holder's copy of the device lies elsewhere only",
			[]*mountinfo.Info{info(1, 0, 0, 70, "/", "/"), info(2, 1, 254, 0, "/srv", "/srv")}, pod, data, nil},
		{"no device in common", []*mountinfo.Info{info(1, 0, 0, 70, "/", "/")}, pod, data, nil},
		{"a chrooted holder: no root entry", []*mountinfo.Info{info(90, 26, 254, 0, "/", "/data")}, pod, data, nil},
		{"a caller view without a root entry", host, []*mountinfo.Info{info(2, 1, 254, 0, data, data)}, data, nil},
		{"a deleted root", []*mountinfo.Info{info(26, 1, 254, 0, "/tmp//deleted", "/")}, pod, data, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := targetViews(c.holder, c.caller, c.target)
			if len(got) != len(c.want) {
				t.Fatalf("targetViews = %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("targetViews = %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestWalk(t *testing.T) {
	table := []*mountinfo.Info{
		{ID: 1, Parent: 0, Mountpoint: "/"},
		{ID: 2, Parent: 1, Mountpoint: "/a"},
		{ID: 3, Parent: 2, Mountpoint: "/a/b"},
		{ID: 4, Parent: 3, Mountpoint: "/a/b"},   // stacked on 3
		{ID: 5, Parent: 1, Mountpoint: "/a/b"},   // on a directory that mount 2 hides
		{ID: 6, Parent: 1, Mountpoint: "/"},      // stacked on the root
		{ID: 7, Parent: 6, Mountpoint: "/x"},     // on the new root
		{ID: 8, Parent: 8, Mountpoint: "/loop"},  // its own parent: never reached
		{ID: 9, Parent: 1, Mountpoint: "/a/b/c"}, // on the old root: hidden by 6
	}
	cases := []struct {
		p    string
		want []int
	}{
		{"/", []int{1, 6}},
		{"/x/y", []int{1, 6, 7}},
		{"/a/b/c", []int{1, 6}},
	}
	for _, c := range cases {
		var got []int
		for _, m := range walk(table, c.p) {
			got = append(got, m.ID)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("walk(%s) = %v, want %v", c.p, got, c.want)
		}
	}
	noRoot := []*mountinfo.Info{{ID: 2, Parent: 1, Mountpoint: "/a"}}
	if got := walk(noRoot, "/a"); got != nil {
		t.Errorf("walk without a root mount = %v, want nil", got)
	}
	// Without the root stacked over it, the old root's children are on the way.
	var got []int
	for _, m := range walk(table[:5], "/a/b/c") {
		got = append(got, m.ID)
	}
	if want := []int{1, 2, 3, 4}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("walk(/a/b/c) = %v, want %v", got, want)
	}
}

// FuzzMatch feeds arbitrary mountinfo text (a holder's table) through the code
// that turns it into detach targets, and checks what the detach path relies
// on: nothing panics; a path match is at or under the target and clean; the
// guard lets through only mounts placed, or with an upperdir, under the root.
func FuzzMatch(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n", "/mnt2", "/")
	f.Add("1 0 254:0 / / rw - ext4 /dev/vda rw\n2 1 0:40 / /d/l/merged rw - overlay overlay rw,upperdir=/d/l/diff,workdir=/d/l/work\n", "/d/l/merged", "/")
	f.Add("1 0 254:0 /var/rootfs / rw - ext4 /dev/vda rw\n2 1 0:41 / /data/x\\040y rw - tmpfs t rw\n", "/var/rootfs/data/x y", "")
	f.Add("7 1 0:5 / /d/m//deleted rw - tmpfs t rw\n", "/d/m", "/jail")
	f.Add("9 1 0:5 /.. /d/../../etc rw - overlay o rw,upperdir=/d/\\054x,workdir=..\n", "/d", "/")
	caller := []*mountinfo.Info{{ID: 1, Major: 254, Minor: 0, Root: "/", Mountpoint: "/"}}
	g := &guard{root: "/d", real: "/d"}
	f.Fuzz(func(t *testing.T, text, target, linkRoot string) {
		if !path.IsAbs(target) || path.Clean(target) != target {
			return
		}
		table, err := mountinfo.GetMountsFromReader(strings.NewReader(text), nil)
		if err != nil {
			return
		}
		views := targetViews(table, caller, target)
		if prefix, placed := placeRoot(table, caller, linkRoot); placed {
			views = rootView(prefix)
		}
		m := newMatcher(target, overlay2UpperDirOf)
		m.learn(table, views)
		for _, mt := range m.match(table, views) {
			if mt.MatchedBy == "path" && (!paths.Within(mt.HostPath, target) || path.Clean(mt.HostPath) != mt.HostPath) {
				t.Fatalf("path match %q is not clean and under %q", mt.HostPath, target)
			}
			if g.allows(mt) && !paths.Within(mt.HostPath, g.real) && !paths.Within(mt.UpperDir, g.real) {
				t.Fatalf("guard allowed %+v outside %s", mt, g.real)
			}
		}
	})
}

// overlay2UpperDirOf is moby's overlay2 layout, as overlay2.Layout gives it
// (a test of this package cannot import overlay2): a layer's merged
// directory has its upper directory, diff, beside it.
func overlay2UpperDirOf(target string) string {
	if path.Base(target) != "merged" {
		return ""
	}
	return path.Join(path.Dir(target), "diff")
}

func TestIDFilter(t *testing.T) {
	keep := idFilter([]MountReport{{Mount: Mount{ID: 7}}, {Mount: Mount{ID: 5}}, {Mount: Mount{ID: 123}}}, []int{0, 2})
	tests := []struct {
		line string
		want bool
	}{
		{"7 1 0:5 / /a rw - tmpfs tmpfs rw\n", true},
		{"123 7 0:5 / /b rw - tmpfs tmpfs rw\n", true},
		{"12 7 0:5 / /c rw - tmpfs tmpfs rw\n", false},
		{"1234 7 0:5 / /d rw - tmpfs tmpfs rw\n", false},
		{"71 123 0:5 / /e rw - tmpfs tmpfs rw\n", false},
		{"", false},
		{"5 1 0:5 / /f rw - tmpfs tmpfs rw\n", false}, // not a target
		{"7", false},
	}
	for _, tc := range tests {
		if got := keep([]byte(tc.line)); got != tc.want {
			t.Errorf("keep(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}
