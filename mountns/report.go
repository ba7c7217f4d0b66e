package mountns

import (
	"fmt"
	"strings"
)

// Action is what the detach path did with one mount.
type Action string

// Actions of a MountReport.
const (
	// Detached: umount2(MNT_DETACH) succeeded in the holder's namespace.
	Detached Action = "detached"
	// WouldDetach: dry run; the mount was resolved and verified, not touched.
	WouldDetach Action = "would-detach"
	// Refused: the mount was not touched, for the reason given (outside the
	// root, the holder's root, a symlink on the way, a different mount found
	// at the path).
	Refused Action = "refused"
	// Failed: the unmount was tried and the kernel said no.
	Failed Action = "failed"
	// Gone: the mount was no longer there when the namespace was entered,
	// or went before this pass could detach it (another cleaner was
	// first, or the namespace ended).
	Gone Action = "gone"
)

// MountReport is the outcome for one mount of a holder.
type MountReport struct {
	Mount
	Action Action `json:"action"`
	// Reason explains a refusal, failure or disappearance.
	Reason string `json:"reason,omitempty"`
	// Remains is true when the mount is still in the namespace's table after
	// the detach pass. When the table could not be read again (the
	// namespace's Error says so), it is true for every mount that umount2
	// did not detach.
	Remains bool  `json:"remains"`
	err     error `json:"-"`
}

// NamespaceReport is the outcome for one holder namespace.
type NamespaceReport struct {
	Namespace
	// ViewPID, Root and Commands are the holder's (see Holder).
	ViewPID  int      `json:"view_pid"`
	Root     string   `json:"root,omitempty"`
	Commands []string `json:"commands"`
	// Gone is true when every process of the namespace exited before it was
	// entered and no walk found it: the namespace and its mounts are gone.
	Gone bool `json:"gone,omitempty"`
	// Error is why the namespace could not be entered or read, if it could not.
	Error  string        `json:"error,omitempty"`
	Result []MountReport `json:"result"`
	err    error         `json:"-"`
}

// Report is the outcome of a detach pass over every holder of a target.
type Report struct {
	// Target is the mount point asked for, in the caller's view.
	Target string `json:"target"`
	// Root is the allowed root.
	Root   string `json:"root"`
	DryRun bool   `json:"dry_run"`
	// Local is set by Unmount: what the unmount in the caller's own
	// namespace said.
	Local      Local             `json:"local,omitempty"`
	Namespaces []NamespaceReport `json:"namespaces"`
}

// Count tallies the mount reports by action, and counts the mounts that
// remain.
func (r Report) Count() (byAction map[Action]int, remaining int) {
	byAction = map[Action]int{}
	for _, ns := range r.Namespaces {
		for _, m := range ns.Result {
			byAction[m.Action]++
			if m.Remains {
				remaining++
			}
		}
	}
	return byAction, remaining
}

// Clean reports whether no foreign copy remains and nothing failed or was
// refused.
func (r Report) Clean() bool {
	by, remaining := r.Count()
	return remaining == 0 && by[Failed] == 0 && by[Refused] == 0 && r.err() == nil
}

func (r Report) err() error {
	for _, ns := range r.Namespaces {
		if ns.err != nil {
			return ns.err
		}
	}
	return nil
}

// DetachError says which foreign copies of a target are still mounted, in
// which namespaces, held by which processes, and why. errors.Is finds the
// kernel's errno (unix.EPERM, unix.EINVAL, ...) through it.
type DetachError struct {
	Report Report
}

func (e *DetachError) Error() string {
	return fmt.Sprintf("mountns: %s is still mounted in other mount namespaces: %s", e.Report.Target, e.Report.Holding())
}

// Holding describes the namespaces of r that still hold a copy, or could
// not be read or entered, one clause each ("mnt:[N] pids [...] (commands):
// mount (id) action: reason; ..."), joined by " | "; "" when there is none.
// A namespace that is gone holds nothing and is left out. Error messages
// and logs use it.
func (r Report) Holding() string {
	var parts []string
	for _, ns := range r.Namespaces {
		if ns.Gone {
			continue
		}
		var bad []string
		if ns.Error != "" {
			bad = append(bad, ns.Error)
		}
		for _, m := range ns.Result {
			if m.Remains || m.Action == Failed || m.Action == Refused {
				bad = append(bad, fmt.Sprintf("%s (mount %d) %s: %s", m.Mountpoint, m.ID, m.Action, m.Reason))
			}
		}
		if len(bad) > 0 {
			parts = append(parts, fmt.Sprintf("mnt:[%d] pids %v (%s): %s",
				ns.Inode, ns.PIDs, strings.Join(ns.Commands, ","), strings.Join(bad, "; ")))
		}
	}
	return strings.Join(parts, " | ")
}

// Unwrap returns the underlying errors, so errors.Is(err, unix.EPERM) works.
func (e *DetachError) Unwrap() []error {
	var out []error
	for _, ns := range e.Report.Namespaces {
		if ns.err != nil {
			out = append(out, ns.err)
		}
		for _, m := range ns.Result {
			if m.err != nil {
				out = append(out, m.err)
			}
		}
	}
	return out
}

// Local is what Unmount's unmount in the caller's own namespace said.
type Local string

// Outcomes of Report.Local.
const (
	// LocalUnmounted: the mount was in the caller's namespace and is
	// detached there; no other namespace was looked at.
	LocalUnmounted Local = "unmounted"
	// LocalNotMounted: the kernel said it is not mounted there (EINVAL,
	// ENOENT), so the copies of other namespaces were detached.
	LocalNotMounted Local = "not-mounted"
)
