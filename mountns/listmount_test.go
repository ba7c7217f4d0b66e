package mountns_test

import (
	"context"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
	"github.com/sirupsen/logrus"
)

// scanPaths are the two ways a scan reads mount tables: listmount and
// statmount by namespace id (Linux 6.11+), and /proc/PID/mountinfo (every
// kernel), forced with WithoutListmount. how is what the scan's debug line
// names.
var scanPaths = []struct {
	name string
	opts []mountns.Option
	how  string
}{
	{"listmount", nil, "(listmount)"},
	{"proc", []mountns.Option{mountns.WithoutListmount()}, "(/proc)"},
}

// logLines is a logger that keeps every message, for tests that check which
// path a scan took.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Levels() []logrus.Level { return logrus.AllLevels }
func (l *logLines) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, e.Message)
	return nil
}

func (l *logLines) logger() *logrus.Logger {
	lg := &logrus.Logger{Out: io.Discard, Formatter: new(logrus.TextFormatter), Hooks: make(logrus.LevelHooks), Level: logrus.DebugLevel}
	lg.AddHook(l)
	return lg
}

func (l *logLines) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// TestScanPathsAgree: on every fixture, the listmount scan and the /proc
// scan give the same holders (namespace, processes, view, every field of
// every mount, unique ids included), and each path really ran: the
// chrooted holder's namespace sends the listmount scan back to /proc.
func TestScanPathsAgree(t *testing.T) {
	nstest.RequireRoot(t)
	if !mountns.HasListmount() {
		t.Skip("kernel lacks listmount/statmount by namespace id (6.11+): only the /proc scan exists")
	}
	for name, build := range fixtures {
		t.Run(name, func(t *testing.T) {
			f := build(t)
			var got [2][]mountns.Holder
			for i, p := range scanPaths {
				var log logLines
				holders, err := mountns.FindHolders(context.Background(), f.target, append([]mountns.Option{mountns.WithLogger(log.logger())}, p.opts...)...)
				if err != nil {
					t.Fatalf("%s: %v", p.name, err)
				}
				if len(holders) != 1 {
					t.Fatalf("%s: want the holder, got %+v", p.name, holders)
				}
				wantHow := p.how
				if strings.HasPrefix(name, "chroot") {
					wantHow = "(/proc)" // only chrooted processes: scanned again through /proc
				}
				if !log.has(wantHow) {
					t.Errorf("%s: the scan's log %q does not name %s", p.name, log.lines, wantHow)
				}
				got[i] = holders
			}
			if !reflect.DeepEqual(got[0], got[1]) {
				t.Errorf("the scans disagree:\nlistmount %+v\nproc      %+v", got[0], got[1])
			}
		})
	}
}

// TestScanPathsAgreeOnPinnedNamespace: a namespace that no process is in
// (kept by a bind mount of its nsfs file) is found by both scans, with the
// same mounts and no holder root.
func TestScanPathsAgreeOnPinnedNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	if !mountns.HasListmount() {
		t.Skip("kernel lacks listmount/statmount by namespace id (6.11+): only the /proc scan exists")
	}
	f := fixtures["overlay held by a shim"](t)
	pinNamespace(t, f.holder.PID)
	if err := f.holder.Stop(); err != nil {
		t.Fatal(err)
	}
	var got [2][]mountns.Holder
	for i, p := range scanPaths {
		holders, err := mountns.FindHolders(context.Background(), f.target, p.opts...)
		if err != nil || len(holders) != 1 || len(holders[0].PIDs) != 0 || holders[0].Inode != f.holder.Namespace {
			t.Fatalf("%s: want the pinned namespace with no pids, got %+v, %v", p.name, holders, err)
		}
		got[i] = holders
	}
	// The /proc scan reads unique ids through a process's root, and there
	// is none here; statmount has them anyway.
	if m := got[0][0].Mounts; len(m) != 1 || m[0].UniqueID == 0 {
		t.Errorf("listmount: want the mount with its unique id, got %+v", m)
	}
	for i := range got[0][0].Mounts {
		got[0][0].Mounts[i].UniqueID = 0
	}
	if !reflect.DeepEqual(got[0], got[1]) {
		t.Errorf("the scans disagree:\nlistmount %+v\nproc      %+v", got[0], got[1])
	}
}
