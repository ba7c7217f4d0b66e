package daemon

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestShimNamespace(t *testing.T) {
	cases := map[string]string{
		"/usr/bin/containerd-shim-runc-v2 -namespace moby -id 3f1c -address /run/containerd/containerd.sock": "moby",
		"containerd-shim-runc-v2 -id 3f1c -debug -namespace=k8s.io":                                          "k8s.io",
		"docker-containerd-shim --namespace moby -workdir /var/lib/docker/containerd/daemon":                 "moby",
		"containerd-shim-runc-v2 -id 3f1c":                                                                   "",
		"containerd-shim-runc-v2 -id x -- -namespace moby":                                                   "",
		"containerd-shim-runc-v2 -namespace":                                                                 "",
	}
	for args, want := range cases {
		if got := shimNamespace(strings.Fields(args)); got != want {
			t.Errorf("%q: namespace %q, want %q", args, got, want)
		}
	}
}

func TestRejoinDataRoot(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(config, []byte(`{"data-root": "/home/docker_rt"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		root string
		args string
		want string
		// what names the input an InputError is expected for.
		what string
	}{
		{root: "/srv/docker/", args: "dockerd --data-root /d", want: "/srv/docker"},
		{args: "dockerd -H fd:// --data-root=/d", want: "/d"},
		{args: "dockerd --config-file " + config, want: "/home/docker_rt"},
		{args: "dockerd --config-file " + filepath.Join(dir, "none.json"), what: "daemon config"},
		{args: "dockerd --data-root relative", what: "--root"},
		{root: "/", args: "dockerd", what: "--root"},
	}
	for _, c := range cases {
		got, err := rejoinDataRoot(RejoinConfig{DataRoot: c.root}, parseCommandLine(strings.Fields(c.args)))
		var ie *InputError
		switch {
		case c.what != "" && (!errors.As(err, &ie) || ie.What != c.what):
			t.Errorf("root %q args %q: %v, want an InputError for %s", c.root, c.args, err, c.what)
		case c.what == "" && (err != nil || got != c.want):
			t.Errorf("root %q args %q: %q, %v; want %q", c.root, c.args, got, err, c.want)
		}
	}
}

func TestRejoinFix(t *testing.T) {
	dir := t.TempDir()
	args := []string{"/usr/bin/dockerd", "-H", "fd://", "--label", "team=it's ours", "--log-opt", `tag={{.Name}} 50% $HOME \x`}
	fix := rejoinFix(args, os.Getpid())
	lines := strings.Split(fix, "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "printf ") || !strings.HasSuffix(lines[1], " > "+RejoinDropInPath) {
		t.Fatalf("fix %q", fix)
	}
	out := filepath.Join(dir, "drop-in.conf")
	script := strings.TrimSuffix(lines[1], RejoinDropInPath) + out
	if b, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", script, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "[Service]\nExecStart=\nExecStart=/usr/local/bin/nsdetach rejoin -- /usr/bin/dockerd -H fd:// --label \"team=it's ours\" --log-opt \"tag={{.Name}} 50%% $$HOME \\\\x\"\n"
	if string(b) != want {
		t.Errorf("drop-in\n%s\nwant\n%s", b, want)
	}
}
