package mountns_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/internal/procfs"
	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// The benchmark fixture of issue 2: 200 namespaces x 10 processes x 20
// mounts of their own, all holding one leaked target; 5 of each namespace's
// mounts lie under the root, so a detach of the root finds 1,000.
const (
	benchNamespaces = 200
	benchProcesses  = 10
	benchMounts     = 20
	benchUnderRoot  = 5
)

// cpuClock reports, besides ns/op, the CPU time (user + system) this
// process spent per op: on a machine shared with other work, wall time
// mostly measures the neighbours, CPU time much less so.
type cpuClock struct{ start time.Duration }

func cpuNow() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuClock {
	b.ResetTimer()
	return &cpuClock{start: cpuNow()}
}

func (c *cpuClock) pause() time.Duration   { return cpuNow() }
func (c *cpuClock) resume(p time.Duration) { c.start += cpuNow() - p }
func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(cpuNow()-c.start)/float64(b.N), "cpu-ns/op")
}

// quiet formats every log entry, as production does, and writes it nowhere,
// so the benchmark output stays readable.
var quiet = &logrus.Logger{Out: io.Discard, Formatter: new(logrus.TextFormatter), Hooks: make(logrus.LevelHooks), Level: logrus.InfoLevel}

type benchFixture struct {
	dir, root, target string
	holders           []*nstest.Holder
	err               error
}

var (
	benchOnce sync.Once
	bench     benchFixture
)

// benchSetup builds the fixture once per test binary; at the binary's end
// (nstest.AtExit) the holders are stopped, which takes their namespaces and
// mounts along, and the fixture's directory is removed.
// MOUNTNS_BENCH_NAMESPACES makes a smaller fixture (TestBenchFixtureCleanup).
func benchSetup(b testing.TB) *benchFixture {
	nstest.RequireRoot(b)
	benchOnce.Do(func() {
		namespaces := benchNamespaces
		if n, err := strconv.Atoi(os.Getenv(benchNamespacesEnv)); err == nil && n > 0 {
			namespaces = n
		}
		dir, err := os.MkdirTemp("", "nsdetach-bench-")
		if err != nil {
			bench.err = err
			return
		}
		nstest.AtExit(func() { bench.teardown() })
		bench.dir, bench.root = dir, filepath.Join(dir, "docker")
		bench.target = filepath.Join(bench.root, "overlay2", "leaked", "merged")
		if err := os.MkdirAll(bench.target, 0o755); err != nil {
			bench.err = err
			return
		}
		if err := unix.Mount("tmpfs", bench.target, "tmpfs", 0, "size=64k"); err != nil {
			bench.err = err
			return
		}
		for i := 0; i < namespaces; i++ {
			var spec nstest.HolderSpec
			spec.Extra = benchProcesses - 1
			for j := 0; j < benchMounts; j++ {
				d := filepath.Join(dir, "ns", fmt.Sprint(i), fmt.Sprint(j))
				if j < benchUnderRoot {
					d = filepath.Join(bench.root, "containers", fmt.Sprint(i), fmt.Sprint(j))
				}
				if err := os.MkdirAll(d, 0o755); err != nil {
					bench.err = err
					return
				}
				spec.Tmpfs = append(spec.Tmpfs, d)
			}
			h, err := nstest.StartHolderNoCleanup(spec)
			if err != nil {
				bench.err = err
				return
			}
			bench.holders = append(bench.holders, h)
		}
		bench.err = unix.Unmount(bench.target, unix.MNT_DETACH)
	})
	if bench.err != nil {
		b.Fatalf("benchmark fixture: %v", bench.err)
	}
	return &bench
}

// benchNamespacesEnv sets the fixture's number of namespaces.
const benchNamespacesEnv = "MOUNTNS_BENCH_NAMESPACES"

// teardown stops every holder (by its pid, through its stdin) and removes
// the fixture's directory; it reports what it could not undo on stderr, as
// no test is left to fail.
func (f *benchFixture) teardown() {
	for _, h := range f.holders {
		if err := h.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "benchmark fixture: stopping holder %d: %v\n", h.PID, err)
		}
	}
	if f.dir == "" {
		return
	}
	unix.Unmount(f.target, unix.MNT_DETACH) // still mounted if the setup failed half-way
	if err := os.RemoveAll(f.dir); err != nil {
		fmt.Fprintf(os.Stderr, "benchmark fixture: %v\n", err)
	}
}

// TestBenchFixtureCleanup runs a test binary that builds a small benchmark
// fixture and checks that, once that binary has exited, no directory and no
// holder of it is left.
func TestBenchFixtureCleanup(t *testing.T) {
	nstest.RequireRoot(t)
	if os.Getenv(benchNamespacesEnv) != "" {
		f := benchSetup(t) // the child: build it, say where, exit
		pids := make([]string, len(f.holders))
		for i, h := range f.holders {
			pids[i] = strconv.Itoa(h.PID)
		}
		fmt.Printf("fixture %s %s\n", f.dir, strings.Join(pids, ","))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestBenchFixtureCleanup$")
	cmd.Env = append(os.Environ(), benchNamespacesEnv+"=2")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var dir, pids string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "fixture "); ok {
			dir, pids, _ = strings.Cut(rest, " ")
		}
	}
	if dir == "" {
		t.Fatalf("child printed no fixture:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		os.RemoveAll(dir)
		t.Errorf("the fixture's directory %s is left after the binary exited (stat: %v)", dir, err)
	}
	for _, p := range strings.Split(pids, ",") {
		if _, err := os.Stat("/proc/" + p); err == nil {
			t.Errorf("holder pid %s still runs after the binary exited", p)
		}
	}
}

// BenchmarkFindHolders is nsdetach's scan: namespace walk and /proc/*/ns/mnt,
// then one mount table per namespace.
func BenchmarkFindHolders(b *testing.B) {
	f := benchSetup(b)
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		holders, err := mountns.FindHolders(context.Background(), f.target)
		if err != nil || len(holders) != benchNamespaces {
			b.Fatalf("%d holders, %v", len(holders), err)
		}
	}
	cpu.report(b)
}

// BenchmarkFindNothing is the scan of a directory that no namespace holds,
// on the same fixture: every table is still read.
func BenchmarkFindNothing(b *testing.B) {
	f := benchSetup(b)
	free := filepath.Join(f.root, "overlay2", "free")
	if err := os.MkdirAll(free, 0o755); err != nil {
		b.Fatal(err)
	}
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		holders, err := mountns.FindHolders(context.Background(), free)
		if err != nil || len(holders) != 0 {
			b.Fatalf("%d holders, %v", len(holders), err)
		}
	}
	cpu.report(b)
}

// BenchmarkNaiveEveryPID is the baseline in Go: read every process's
// mountinfo and look for the path.
func BenchmarkNaiveEveryPID(b *testing.B) {
	f := benchSetup(b)
	needle := []byte(" " + f.target + " ")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		files, _ := filepath.Glob("/proc/[0-9]*/mountinfo")
		n := 0
		for _, p := range files {
			if data, err := os.ReadFile(p); err == nil && bytes.Contains(data, needle) {
				n++
			}
		}
		if n < benchNamespaces*benchProcesses {
			b.Fatalf("found %d processes", n)
		}
	}
}

// BenchmarkGrep is what operators run by hand: grep -l PATH /proc/*/mountinfo.
func BenchmarkGrep(b *testing.B) {
	f := benchSetup(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, _ := exec.Command("sh", "-c", "grep -l -F ' "+f.target+" ' /proc/[0-9]*/mountinfo").Output()
		if n := bytes.Count(out, []byte("\n")); n < benchNamespaces*benchProcesses {
			b.Fatalf("grep found %d", n)
		}
	}
}

// BenchmarkFloorWalk is the part of a scan that no scan can skip: one
// readlink of /proc/PID/ns/mnt per process, which names the holders'
// processes (and learns which namespaces have any).
func BenchmarkFloorWalk(b *testing.B) {
	benchSetup(b)
	pids, err := procfs.PIDs()
	if err != nil {
		b.Fatal(err)
	}
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		for _, pid := range pids {
			procfs.MountNamespace(pid) // a process that exited meanwhile costs the same
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(len(pids)), "processes")
}

// BenchmarkFloorTables is the other part: one mountinfo read per
// namespace (the kernel renders each table), with no parse.
func BenchmarkFloorTables(b *testing.B) {
	f := benchSetup(b)
	buf := make([]byte, 64<<10)
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		for _, h := range f.holders {
			data, err := os.Open("/proc/" + strconv.Itoa(h.PID) + "/mountinfo")
			if err != nil {
				b.Fatal(err)
			}
			for {
				if n, err := data.Read(buf); n == 0 || err != nil {
					break
				}
			}
			data.Close()
		}
	}
	cpu.report(b)
}

// BenchmarkDetach1000 detaches the 1,000 mounts under the root spread over
// 200 namespaces (one setns per namespace), scan included; the holders
// remount between iterations, off the clock.
func BenchmarkDetach1000(b *testing.B) {
	f := benchSetup(b)
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		rep, err := mountns.DetachAll(context.Background(), filepath.Join(f.root, "containers"), mountns.WithRoot(f.root), mountns.WithLogger(quiet))
		if by, _ := rep.Count(); err != nil || by[mountns.Detached] != benchNamespaces*benchUnderRoot {
			b.Fatalf("detached %v, %v", by, err)
		}
		b.StopTimer()
		p := cpu.pause()
		for _, h := range f.holders {
			if err := h.Remount(); err != nil {
				b.Fatal(err)
			}
		}
		cpu.resume(p)
		b.StartTimer()
	}
	cpu.report(b)
}

// TestSideBySide times whole processes on the benchmark fixture, in
// interleaved rounds (the order flips each round, so neither always runs on
// a warm cache): `nsdetach holders TARGET --json` (the binary in
// NSDETACH_BIN) against `grep -l TARGET /proc/*/mountinfo`, both through
// sh -c. It prints each median, the ratio and the load average; each
// answer is checked (200 namespaces, 2,000 processes). NSDETACH_BASE_BIN
// adds another build of nsdetach (the one before a change). scripts/bench.sh
// runs it; it is skipped without NSDETACH_BIN.
func TestSideBySide(t *testing.T) {
	bin := os.Getenv("NSDETACH_BIN")
	if bin == "" {
		t.Skip("NSDETACH_BIN is not set (scripts/bench.sh sets it to a built nsdetach)")
	}
	rounds := 21
	if n, err := strconv.Atoi(os.Getenv("NSDETACH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	f := benchSetup(t)
	type contender struct {
		name  string
		cmd   string
		check func(out []byte) error
		times []time.Duration
		cpu   []time.Duration // user + system, of sh and what it ran
	}
	cs := []*contender{
		{name: "nsdetach holders --json", cmd: bin + " holders " + f.target + " --json", check: func(out []byte) error {
			if n := bytes.Count(out, []byte(`"namespace":`)); n != benchNamespaces {
				return fmt.Errorf("%d namespaces in the JSON, want %d", n, benchNamespaces)
			}
			return nil
		}},
		{name: "grep -l PATH /proc/*/mountinfo", cmd: "grep -l " + f.target + " /proc/*/mountinfo", check: func(out []byte) error {
			if n := bytes.Count(out, []byte("\n")); n < benchNamespaces*benchProcesses {
				return fmt.Errorf("grep listed %d files, want at least %d", n, benchNamespaces*benchProcesses)
			}
			return nil
		}},
	}
	if base := os.Getenv("NSDETACH_BASE_BIN"); base != "" {
		// Another build (the one before a change), checked the same way.
		cs = append(cs, &contender{name: "base: nsdetach holders --json", cmd: base + " holders " + f.target + " --json", check: cs[0].check})
	}
	// The floors: what starting the binary costs without any scan, and
	// what starting any process costs. grep / `nsdetach version` is the
	// best ratio any scan inside this binary could reach.
	floors := []*contender{
		{name: "floor: nsdetach version", cmd: bin + " version", check: func([]byte) error { return nil }},
		{name: "floor: /bin/true", cmd: "/bin/true", check: func([]byte) error { return nil }},
	}
	cs = append(cs, floors...)
	t.Logf("before: %s", uptime())
	for r := 0; r < rounds; r++ {
		for k := range cs {
			c := cs[(k+r)%len(cs)]
			cmd := exec.Command("sh", "-c", c.cmd)
			start := time.Now()
			out, _ := cmd.Output() // exit 1 is "found"
			c.times = append(c.times, time.Since(start))
			c.cpu = append(c.cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			if err := c.check(out); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		}
	}
	t.Logf("after:  %s", uptime())
	med := make([]time.Duration, len(cs))
	for i, c := range cs {
		med[i] = median(c.times)
		t.Logf("%-32s median %7.1f ms (min %.1f, max %.1f), CPU median %.1f ms, over %d interleaved runs", c.name, ms(med[i]), ms(minOf(c.times)), ms(maxOf(c.times)), ms(median(c.cpu)), len(c.times))
	}
	t.Logf("grep / nsdetach = %.1fx (medians)", float64(med[1])/float64(med[0]))
	if len(cs) > 2+len(floors) {
		t.Logf("grep / base = %.1fx, base / nsdetach = %.1fx (medians)", float64(med[1])/float64(med[2]), float64(med[2])/float64(med[0]))
	}
	start := med[len(cs)-len(floors)]
	t.Logf("grep / (nsdetach version) = %.1fx: the ceiling for any scan in this binary; nsdetach holders spends %.1f ms beyond its start-up", float64(med[1])/float64(start), ms(med[0]-start))
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func minOf(ds []time.Duration) time.Duration { return sortedAt(ds, 0) }
func maxOf(ds []time.Duration) time.Duration { return sortedAt(ds, len(ds)-1) }

func sortedAt(ds []time.Duration, i int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// uptime is /proc/loadavg: the load while a figure was taken.
func uptime() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return err.Error()
	}
	return "loadavg " + string(bytes.TrimSpace(b))
}
