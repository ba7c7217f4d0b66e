package mountns

import (
	"path"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
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
	got := map[int]string{}
	for _, m := range newMatcher(target).match(table, "/", true) {
		got[m.ID] = m.MatchedBy
	}
	want := map[int]string{2: "path", 3: "path", 5: "upperdir"}
	if len(got) != len(want) {
		t.Fatalf("matched %v, want %v", got, want)
	}
	for id, by := range want {
		if got[id] != by {
			t.Errorf("mount %d matched by %q, want %q", id, got[id], by)
		}
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
	caller := []*mountinfo.Info{{Major: 254, Minor: 0, Root: "/", Mountpoint: "/"}}
	g := &guard{root: "/d", real: "/d"}
	f.Fuzz(func(t *testing.T, text, target, linkRoot string) {
		if !path.IsAbs(target) || path.Clean(target) != target {
			return
		}
		table, err := mountinfo.GetMountsFromReader(strings.NewReader(text), nil)
		if err != nil {
			return
		}
		prefix, placed := placeRoot(table, caller, linkRoot)
		m := newMatcher(target)
		m.learn(table, prefix, placed)
		for _, mt := range m.match(table, prefix, placed) {
			if mt.MatchedBy == "path" && (!within(mt.HostPath, target) || path.Clean(mt.HostPath) != mt.HostPath) {
				t.Fatalf("path match %q is not clean and under %q", mt.HostPath, target)
			}
			if g.allows(mt) && !within(mt.HostPath, g.real) && !within(mt.UpperDir, g.real) {
				t.Fatalf("guard allowed %+v outside %s", mt, g.real)
			}
		}
	})
}
