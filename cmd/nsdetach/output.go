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

// emit writes v as one JSON document when asJSON, else the text that
// printText writes.
func emit(w io.Writer, asJSON bool, v interface{}, printText func()) error {
	if asJSON {
		return writeJSON(w, v)
	}
	printText()
	return nil
}

// found is the outcome of a command that looked for something: exit status
// 1 (the output already says what) when it found it, else nil.
func found(something bool) error {
	if something {
		return &exitError{code: exitFound, err: errFound}
	}
	return nil
}

// who names a namespace and its processes in one phrase.
func who(ns mountns.Namespace, commands []string) string {
	if len(ns.PIDs) == 0 {
		return fmt.Sprintf("mnt:[%d] (no process seen: pinned by an nsfs mount or fd, or its processes may not be inspected)", ns.Inode)
	}
	ps := make([]string, len(ns.PIDs))
	for i, p := range ns.PIDs {
		ps[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf("mnt:[%d] pids %s (%s)", ns.Inode, shortList(ps, ","), strings.Join(commands, ","))
}

// shortList joins the first five items with sep and says how many more
// there are.
func shortList(items []string, sep string) string {
	const show = 5
	if len(items) > show {
		items = append(items[:show:show], fmt.Sprintf("+%d more", len(items)-show))
	}
	return strings.Join(items, sep)
}

func describeMount(m mountns.Mount) string {
	s := fmt.Sprintf("%s (mount %d, %s", m.Mountpoint, m.ID, m.FSType)
	if m.HostPath != "" && m.HostPath != m.Mountpoint {
		s += ", here " + m.HostPath
	}
	if m.HolderRoot {
		s += ", the holder's root"
	}
	return s + ", matched by " + string(m.MatchedBy) + ")"
}
