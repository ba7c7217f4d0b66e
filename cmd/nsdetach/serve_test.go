package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsdetach/nsdetach/internal/nstest"
	"github.com/nsdetach/nsdetach/mountns"
)

// startServe runs `nsdetach serve` in this process and returns the base URL
// it serves on and a channel with its exit code.
func startServe(t *testing.T, args ...string) (string, <-chan int) {
	t.Helper()
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := run(append([]string{"serve", "--listen", "127.0.0.1:0"}, args...), pw, &errOut)
		pw.Close()
		done <- code
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		t.Fatalf("serve exited before listening: exit %d: %s", <-done, errOut.String())
	}
	go io.Copy(io.Discard, pr)
	m := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(lines.Text())
	if m == nil {
		t.Fatalf("no address in %q", lines.Text())
	}
	return "http://" + m[1], done
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	nstest.RequireRoot(t)
	cases := []struct {
		name        string
		detachStale bool
		want        []string
		deadHeld    bool
	}{
		{"export only", false, []string{
			`nsdetach_leaked_mounts{state="stale"} 1`,
			`nsdetach_leaked_mounts{state="pinned"} 1`,
			`nsdetach_mounts_in_use 1`,
			`nsdetach_detach_total{result="detached"} 0`,
			`nsdetach_scan_duration_seconds_count 1`,
			`nsdetach_scan_errors_total{reason="permission"} 0`,
		}, true},
		{"detach stale leaks", true, []string{
			`nsdetach_leaked_mounts{state="stale"} 0`,
			`nsdetach_leaked_mounts{state="pinned"} 1`,
			`nsdetach_detach_total{result="detached"} 1`,
			`nsdetach_detach_total{result="failed"} 0`,
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newIncident(t)
			args := []string{"--root", in.root, "--interval", "1h"}
			if c.detachStale {
				args = append(args, "--detach-stale")
			}
			base, done := startServe(t, args...)

			code, body := get(t, base+"/metrics")
			if code != http.StatusOK {
				t.Fatalf("/metrics: %d %s", code, body)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w+"\n") {
					t.Errorf("/metrics lacks %q", w)
				}
			}
			if !regexp.MustCompile(`(?m)^nsdetach_namespaces_scanned [1-9]`).MatchString(body) {
				t.Errorf("/metrics: no namespaces scanned:\n%s", body)
			}
			if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			if got := nstest.IsMountedIn(in.old.PID, in.dead.Merged); got != c.deadHeld {
				t.Errorf("old namespace holds the dead layer: %v, want %v", got, c.deadHeld)
			}
			if !nstest.IsMountedIn(in.old.PID, in.live.Merged) {
				t.Error("serve detached a pinned mount")
			}

			if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case code := <-done:
				if code != exitOK {
					t.Errorf("exit %d after SIGTERM, want 0", code)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("serve did not shut down on SIGTERM")
			}
			if _, err := http.Get(base + "/healthz"); err == nil {
				t.Error("still serving after shutdown")
			}
		})
	}
}

func TestServeBadListen(t *testing.T) {
	nstest.RequireRoot(t)
	root := nstest.Dir(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		listen string
		says   string
	}{
		{"bogus", "missing port"},
		{"192.0.2.1:9733", "cannot assign requested address"},
		{busy.Addr().String(), "address already in use"},
		{"", "--listen ADDR is required"},
	}
	for _, c := range cases {
		t.Run(c.listen, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run([]string{"serve", "--root", root, "--listen", c.listen}, &out, &errOut)
			if code != exitUsage {
				t.Errorf("exit %d, want %d: %s", code, exitUsage, errOut.String())
			}
			if !strings.Contains(errOut.String(), c.says) || strings.Count(errOut.String(), "\n") != 1 {
				t.Errorf("stderr %q: want one line containing %q", errOut.String(), c.says)
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"serve", "--root", root, "--listen", "127.0.0.1:0", "--interval", "0s"}, &out, &errOut); code != exitUsage {
		t.Errorf("--interval 0s: exit %d: %s", code, errOut.String())
	}
}

// deniedLister fails as SystemLister does for a process that may not read
// another process's namespace.
type deniedLister struct{}

func (deniedLister) List(context.Context) ([]mountns.Namespace, error) {
	return nil, &os.PathError{Op: "readlink", Path: "/proc/1/ns/mnt", Err: syscall.EACCES}
}

// TestServeScanError: a scan that fails is exported by reason, /healthz
// fails with the error, and the gauges of scan results disappear rather
// than read as zeros or as the previous scan's figures.
func TestServeScanError(t *testing.T) {
	nstest.RequireRoot(t)
	in := newIncident(t)
	e := newExporter(in.root, false)
	if err := e.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.handler())
	defer srv.Close()
	if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, `nsdetach_leaked_mounts{state="stale"} 1`+"\n") {
		t.Fatalf("first scan not exported:\n%s", body)
	}

	e.opts = []mountns.Option{mountns.WithLister(deniedLister{})}
	if err := e.pass(context.Background()); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("pass = %v, want a permission error", err)
	}
	_, body := get(t, srv.URL+"/metrics")
	for _, w := range []string{`nsdetach_scan_errors_total{reason="permission"} 1`, `nsdetach_scan_errors_total{reason="other"} 0`} {
		if !strings.Contains(body, w+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", w, body)
		}
	}
	for _, gone := range []string{"nsdetach_leaked_mounts", "nsdetach_mounts_in_use", "nsdetach_namespaces_scanned"} {
		if strings.Contains(body, "\n"+gone) {
			t.Errorf("/metrics exports %s after a failed scan:\n%s", gone, body)
		}
	}
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "permission denied") {
		t.Errorf("/healthz: %d %q, want 503 naming the error", code, body)
	}

	e.opts = nil
	if err := e.pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, srv.URL+"/metrics"); !strings.Contains(body, `nsdetach_leaked_mounts{state="stale"} 1`+"\n") {
		t.Errorf("a good scan after a failed one is not exported:\n%s", body)
	}
	if code, _ := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after a good scan: %d", code)
	}
}
