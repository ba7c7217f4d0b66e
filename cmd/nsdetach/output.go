package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nsdetach/nsdetach/mountns"
)

func writeJSON(w io.Writer, v interface{}) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// who names a namespace and its processes in one phrase.
func who(ns mountns.Namespace, commands []string) string {
	if len(ns.PIDs) == 0 {
		return fmt.Sprintf("mnt:[%d] (no process; pinned by an nsfs mount or fd)", ns.Inode)
	}
	const show = 5
	var ps []string
	for i, p := range ns.PIDs {
		if i == show {
			ps = append(ps, fmt.Sprintf("+%d more", len(ns.PIDs)-show))
			break
		}
		ps = append(ps, strconv.Itoa(p))
	}
	return fmt.Sprintf("mnt:[%d] pids %s (%s)", ns.Inode, strings.Join(ps, ","), strings.Join(commands, ","))
}

func describeMount(m mountns.Mount) string {
	s := fmt.Sprintf("%s (mount %d, %s", m.Mountpoint, m.ID, m.FSType)
	if m.HostPath != "" && m.HostPath != m.Mountpoint {
		s += ", here " + m.HostPath
	}
	if m.HolderRoot {
		s += ", the holder's root"
	}
	return s + ", matched by " + m.MatchedBy + ")"
}
