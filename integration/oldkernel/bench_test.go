package oldkernel

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func nsDuration(ns int64) time.Duration { return time.Duration(ns) }

// benchSyscall measures one system call, b.N times, in a helper process
// started plainly and under the emulator. The filter covers a whole
// process (libseccomp-golang always asks for TSYNC), so the calls cannot
// run in the test process; the helper times its own loop, which leaves
// process start-up out of the figure.
func benchSyscall(b *testing.B, kind string) {
	requireRoot(b)
	for _, emulated := range []bool{false, true} {
		name := "plain"
		if emulated {
			name = "emulated"
		}
		b.Run(name, func(b *testing.B) {
			op := "bench:" + kind + ":" + strconv.Itoa(b.N) + ":" + b.TempDir()
			var out []byte
			var stats Stats
			if emulated {
				var buf strings.Builder
				res, err := Run(context.Background(), Config{
					Args:   []string{"/proc/self/exe", op},
					Env:    append(os.Environ(), helperEnv+"=1"),
					Stdout: &buf, Stderr: os.Stderr,
				})
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("Run: exit %d, %v", res.ExitCode, err)
				}
				out, stats = []byte(buf.String()), res.Stats
			} else {
				cmd := exec.Command("/proc/self/exe", op)
				cmd.Env = append(os.Environ(), helperEnv+"=1")
				cmd.Stderr = os.Stderr
				var err error
				if out, err = cmd.Output(); err != nil {
					b.Fatal(err)
				}
			}
			ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				b.Fatalf("helper said %q", out)
			}
			b.ReportMetric(float64(ns)/float64(b.N), "ns/op")
			b.ReportMetric(float64(stats.Notifications)/float64(b.N), "notifications/op")
		})
	}
}

// BenchmarkRmdir is the cost of the emulation itself.
func BenchmarkRmdir(b *testing.B) { benchSyscall(b, "rmdir") }

// BenchmarkMkdir, BenchmarkGetpid and BenchmarkUnlink are unrelated calls:
// the filter lets them through in BPF, without a notification.
func BenchmarkMkdir(b *testing.B)  { benchSyscall(b, "mkdir") }
func BenchmarkGetpid(b *testing.B) { benchSyscall(b, "getpid") }
func BenchmarkUnlink(b *testing.B) { benchSyscall(b, "unlink") }

// benchHelper runs n calls of kind under dir (prepared beforehand) and
// returns the time the calls took.
func benchHelper(kind string, n int, dir string) (time.Duration, error) {
	path := func(i int) string { return dir + "/" + strconv.Itoa(i) }
	for i := 0; i < n; i++ {
		var err error
		switch kind {
		case "rmdir":
			err = unix.Mkdir(path(i), 0o755)
		case "unlink":
			err = os.WriteFile(path(i), nil, 0o644)
		}
		if err != nil {
			return 0, err
		}
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		var err error
		switch kind {
		case "rmdir":
			err = rmdirSyscall(path(i))
		case "unlink":
			err = unlinkSyscall(path(i))
		case "mkdir":
			err = unix.Mkdir(path(i), 0o755)
		case "getpid":
			unix.Getpid()
		}
		if err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// BenchmarkProcMountChecker is the check alone, for a directory nothing
// has mounted on: what every emulated rmdir pays on top of the round trip.
func BenchmarkProcMountChecker(b *testing.B) {
	requireRoot(b)
	dir := b.TempDir()
	pid := os.Getpid()
	for i := 0; i < b.N; i++ {
		busy, err := ProcMountChecker(context.Background(), pid, dir)
		if err != nil || busy {
			b.Fatal(busy, err)
		}
	}
}
