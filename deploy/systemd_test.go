package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dockerUnit is a docker.service as the incident's nodes had it (Docker
// 18.06 on a systemd host: MountFlags=slave, dockerd starting its own
// containerd); the drop-ins are verified on top of it.
const dockerUnit = `[Unit]
Description=Docker Application Container Engine
After=network-online.target firewalld.service
Wants=network-online.target

[Service]
Type=notify
ExecStart=/usr/bin/dockerd -H fd://
ExecReload=/bin/kill -s HUP $MAINPID
MountFlags=slave
LimitNOFILE=1048576
TimeoutStartSec=0
Delegate=yes
KillMode=process
Restart=on-failure

[Install]
WantedBy=multi-user.target
`

// systemdAnalyze returns the systemd-analyze to use, or skips: `make test`
// installs it (the systemd package, scripts/deps.sh), but a bare `go test`
// may run where it is not.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd; make test installs it)")
	}
	return path
}

// verifyUnit runs `systemd-analyze verify docker.service` in a root holding
// the unit, the given drop-ins and the programs their Exec lines name (as
// empty executables), with the system's own units for the dependencies. Any
// diagnostic is a failure: systemd-analyze exits 0 on an unknown key or a
// value it cannot parse, and only warns.
func verifyUnit(t *testing.T, analyze string, dropIns map[string]string, programs ...string) (string, error) {
	t.Helper()
	root := t.TempDir()
	units := filepath.Join(root, "etc/systemd/system")
	must(t, os.MkdirAll(filepath.Join(units, "docker.service.d"), 0o755))
	must(t, os.WriteFile(filepath.Join(units, "docker.service"), []byte(dockerUnit), 0o644))
	for name, text := range dropIns {
		must(t, os.WriteFile(filepath.Join(units, "docker.service.d", name), []byte(text), 0o644))
	}
	for _, p := range programs {
		must(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		must(t, os.WriteFile(filepath.Join(root, p), []byte("#!/bin/sh\n"), 0o755))
	}
	// sysinit.target and the rest of the default dependencies.
	for _, dir := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(dir, "sysinit.target")); err == nil {
			must(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
			if out, err := exec.Command("cp", "-a", dir, filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
				t.Fatalf("cp -a %s: %v: %s", dir, err, out)
			}
			break
		}
	}
	out, err := exec.Command(analyze, "verify", "--root="+root, "docker.service").CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err == nil && text != "" {
		return text, errors.New("diagnostics on a successful exit")
	}
	return text, err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// TestSystemdAnalyzeVerify: each drop-in, on a docker.service as the
// incident's nodes had it, passes systemd's own verification without a
// single diagnostic; broken ones do not.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	base := []string{"/usr/bin/dockerd", "/bin/kill"}
	mountflags := readFile(t, filepath.Join("systemd", "docker.service.d", "10-nsdetach-mountflags.conf"))
	rejoin := readFile(t, filepath.Join("systemd", "docker.service.d", "20-nsdetach-rejoin.conf"))
	cases := []struct {
		name     string
		dropIns  map[string]string
		programs []string
		says     string // "" when it must verify clean
	}{
		{"10-nsdetach-mountflags.conf", map[string]string{"10-nsdetach-mountflags.conf": mountflags}, base, ""},
		{"20-nsdetach-rejoin.conf", map[string]string{"20-nsdetach-rejoin.conf": rejoin}, append(base, "/usr/local/bin/nsdetach"), ""},
		// The checks the two above rely on.
		{"rejoin without nsdetach installed", map[string]string{"20-nsdetach-rejoin.conf": rejoin}, base, "/usr/local/bin/nsdetach is not executable"},
		{"a misspelt key", map[string]string{"10-nsdetach-mountflags.conf": strings.Replace(mountflags, "\nMountFlags=shared\n", "\nMountFlag=shared\n", 1)}, base, "Unknown key"},
		{"a bad value", map[string]string{"10-nsdetach-mountflags.conf": strings.Replace(mountflags, "\nMountFlags=shared\n", "\nMountFlags=shraed\n", 1)}, base, "shraed"},
		{"a second ExecStart without clearing", map[string]string{"20-nsdetach-rejoin.conf": strings.Replace(rejoin, "ExecStart=\n", "", 1)}, append(base, "/usr/local/bin/nsdetach"), "ExecStart="},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := verifyUnit(t, analyze, c.dropIns, c.programs...)
			if c.says == "" {
				if err != nil {
					t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(out, c.says) {
				t.Errorf("systemd-analyze verify passed or did not say %q: %v\n%s", c.says, err, out)
			}
		})
	}
}
