package mountns

// InNamespace runs fn on an OS thread, never the process's main one, that
// has joined the mount namespace nsfd (an open /proc/PID/ns/mnt), and
// returns its error. The thread is locked and never unlocked, so it ends
// with fn's goroutine and the namespace never reaches another goroutine; fn
// must do all its work on the calling goroutine. This package detaches
// mounts this way; nsdetach rejoin executes dockerd this way.
func InNamespace(nsfd int, fn func() error) error {
	return enter(nsfd, func(int) error { return fn() })
}
