package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/pkg/errors"
)

// DefaultConfigFile and DefaultDataRoot are dockerd's defaults, used when
// neither the caller nor dockerd's command line names them.
const (
	DefaultConfigFile = "/etc/docker/daemon.json"
	DefaultDataRoot   = "/var/lib/docker"
)

// commandLine is what Doctor and Rejoin need from dockerd's command line.
type commandLine struct {
	args        []string
	liveRestore *bool
	configFile  string
	dataRoot    string
	// containerdNamespace is --containerd-namespace: the containerd
	// namespace of the engine's containers (dockerd's default is moby).
	containerdNamespace string
	// storageDriver is --storage-driver (-s); features are the --feature
	// flags (name[=bool]), for the storage mode.
	storageDriver string
	features      map[string]*bool
}

// parseCommandLine reads dockerd's flags the way its flag parser (pflag)
// does: --flag=value or --flag value for strings, --flag or --flag=bool for
// booleans (a bool flag never takes the next argument).
func parseCommandLine(args []string) commandLine {
	cl := commandLine{args: args}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(a, "=")
		next := func() string {
			if hasValue {
				return value
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch name {
		case "--live-restore":
			on := true
			if hasValue {
				b, err := strconv.ParseBool(value)
				if err != nil {
					continue
				}
				on = b
			}
			cl.liveRestore = &on
		case "--config-file":
			cl.configFile = next()
		case "--data-root", "--graph", "-g":
			cl.dataRoot = next()
		case "--containerd-namespace":
			cl.containerdNamespace = next()
		case "--storage-driver", "-s":
			cl.storageDriver = next()
		case "--feature":
			k, v, set := strings.Cut(next(), "=")
			on := true
			if set {
				b, err := strconv.ParseBool(v)
				if err != nil {
					continue // dockerd refuses it
				}
				on = b
			}
			if cl.features == nil {
				cl.features = map[string]*bool{}
			}
			cl.features[k] = &on
		}
	}
	return cl
}

// readCommandLine reads /proc/PID/cmdline (NUL-separated).
func readCommandLine(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// daemonConfig is what Doctor needs from daemon.json.
type daemonConfig struct {
	liveRestore   *bool
	dataRoot      string
	storageDriver string
	features      map[string]*bool
}

// parseDaemonConfig parses daemon.json; name is how the file is called in
// errors.
func parseDaemonConfig(name string, b []byte) (daemonConfig, error) {
	var c daemonConfig
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		where := ""
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			where = fmt.Sprintf(" at line %d", line)
		}
		return c, &InputError{What: "daemon config", Value: name,
			Reason: fmt.Sprintf("is not valid JSON%s (%v): fix the file (dockerd refuses to start with it, too) or pass the right one with --config", where, err), Err: err}
	}
	if v, ok := raw["live-restore"]; ok {
		var on bool
		if err := json.Unmarshal(v, &on); err != nil {
			return c, &InputError{What: "daemon config", Value: name,
				Reason: fmt.Sprintf(`"live-restore" is %s, not true or false: fix the file`, v)}
		}
		c.liveRestore = &on
	}
	for _, key := range []string{"data-root", "graph"} {
		if v, ok := raw[key]; ok && c.dataRoot == "" {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return c, &InputError{What: "daemon config", Value: name,
					Reason: fmt.Sprintf("%q is %s, not a path: fix the file", key, v)}
			}
			c.dataRoot = s
		}
	}
	if v, ok := raw["storage-driver"]; ok {
		if err := json.Unmarshal(v, &c.storageDriver); err != nil {
			return c, &InputError{What: "daemon config", Value: name,
				Reason: fmt.Sprintf(`"storage-driver" is %s, not a name: fix the file`, v)}
		}
	}
	if v, ok := raw["features"]; ok {
		if err := json.Unmarshal(v, &c.features); err != nil {
			return c, &InputError{What: "daemon config", Value: name,
				Reason: fmt.Sprintf(`"features" is %s, not an object of true and false: fix the file`, v)}
		}
	}
	return c, nil
}
