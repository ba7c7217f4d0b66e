//go:build linux && (mips || mipsle)

package mountns

// statmount(2) and listmount(2) in the o32 table (base 4000); see
// sysnum_linux.go.
const (
	sysStatmount = 4457
	sysListmount = 4458
)
