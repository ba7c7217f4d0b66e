package mountns_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/sirupsen/logrus"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nsdetach/nsdetach/internal/nstest"
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

// benchSetup builds the fixture once per test binary; the holders exit when
// the binary does (their stdin closes) and take their namespaces along.
func benchSetup(b *testing.B) *benchFixture {
	nstest.RequireRoot(b)
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nsdetach-bench-")
		if err != nil {
			bench.err = err
			return
		}
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
		for i := 0; i < benchNamespaces; i++ {
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

// BenchmarkFindHolders is nsdetach's scan, each way: listmount and
// statmount by namespace id (Linux 6.11+), then /proc only for the
// namespaces that hold the target; and the /proc way of older kernels
// (namespace walk and /proc/*/ns/mnt, then one mountinfo per namespace).
func BenchmarkFindHolders(b *testing.B) {
	f := benchSetup(b)
	for _, p := range scanPaths {
		b.Run(p.name, func(b *testing.B) {
			if p.opts == nil && !mountns.HasListmount() {
				b.Skip("kernel lacks listmount/statmount by namespace id (6.11+)")
			}
			for i := 0; i < b.N; i++ {
				holders, err := mountns.FindHolders(context.Background(), f.target, p.opts...)
				if err != nil || len(holders) != benchNamespaces {
					b.Fatalf("%d holders, %v", len(holders), err)
				}
			}
		})
	}
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

// BenchmarkDetach1000 detaches the 1,000 mounts under the root spread over
// 200 namespaces (one setns per namespace), scan included, each scan path;
// the holders remount between iterations, off the clock.
func BenchmarkDetach1000(b *testing.B) {
	f := benchSetup(b)
	for _, p := range scanPaths {
		b.Run(p.name, func(b *testing.B) {
			if p.opts == nil && !mountns.HasListmount() {
				b.Skip("kernel lacks listmount/statmount by namespace id (6.11+)")
			}
			opts := append([]mountns.Option{mountns.WithRoot(f.root), mountns.WithLogger(quiet)}, p.opts...)
			for i := 0; i < b.N; i++ {
				rep, err := mountns.DetachAll(context.Background(), filepath.Join(f.root, "containers"), opts...)
				if by, _ := rep.Count(); err != nil || by[mountns.Detached] != benchNamespaces*benchUnderRoot {
					b.Fatalf("detached %v, %v", by, err)
				}
				b.StopTimer()
				for _, h := range f.holders {
					if err := h.Remount(); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
			}
		})
	}
}
