//go:build linux && !(mips || mipsle || mips64 || mips64le)

package mountns

// statmount(2) and listmount(2) (Linux 6.8) have one number on every
// architecture that uses the common syscall table; golang.org/x/sys v0.18.0
// has neither name, so they are defined here.
const (
	sysStatmount = 457
	sysListmount = 458
)
