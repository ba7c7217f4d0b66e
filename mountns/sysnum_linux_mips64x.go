//go:build linux && (mips64 || mips64le)

package mountns

// statmount(2) and listmount(2) in the n64 table (base 5000); see
// sysnum_linux.go.
const (
	sysStatmount = 5457
	sysListmount = 5458
)
