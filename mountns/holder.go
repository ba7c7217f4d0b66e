package mountns

// Holder is a mount namespace, other than the caller's, that holds the target
// or mounts below it.
type Holder struct {
	Namespace
	// ViewPID is the process through whose root the table was read and the
	// mounts are detached; 0 when no process holds the namespace.
	ViewPID int `json:"view_pid"`
	// Root is where the holder's root directory lies in the caller's view;
	// empty when it has no place there or none could be shown, and then
	// RootUnknown says why.
	Root        string `json:"root,omitempty"`
	RootUnknown string `json:"root_unknown,omitempty"`
	// Commands are the distinct command names (/proc/PID/comm) of the first
	// 2 PIDs.
	Commands []string `json:"commands"`
	// Mounts are the matching mounts, in mount-table order.
	Mounts []Mount `json:"mounts"`
}
