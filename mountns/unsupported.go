//go:build !linux

package mountns

import "context"

// Mount namespaces are Linux's. Elsewhere the package compiles, so that moby
// builds for every platform with the patch series applied, and each call
// fails with ErrNotSupported; the patches call it on Linux only.

// List fails: there are no mount namespaces on this platform.
func (SystemLister) List(context.Context) ([]Namespace, error) { return nil, ErrNotSupported }

// HasNamespaceWalk reports false: there is no nsfs walk on this platform.
func HasNamespaceWalk() bool { return false }

// HasListmount reports false: there is no listmount on this platform.
func HasListmount() bool { return false }

// FindHolders fails: there are no mount namespaces on this platform.
func FindHolders(context.Context, string, ...Option) ([]Holder, error) { return nil, ErrNotSupported }

// DetachAll fails: there are no mount namespaces on this platform.
func DetachAll(_ context.Context, mountpoint string, opts ...Option) (Report, error) {
	return unsupportedReport(mountpoint, opts), ErrNotSupported
}

// DetachHolders fails: there are no mount namespaces on this platform.
func DetachHolders(_ context.Context, mountpoint string, _ []Holder, opts ...Option) (Report, error) {
	return unsupportedReport(mountpoint, opts), ErrNotSupported
}

// Unmount fails: there are no mount namespaces (nor umount2) on this platform.
func Unmount(_ context.Context, mountpoint string, opts ...Option) (Report, error) {
	return unsupportedReport(mountpoint, opts), ErrNotSupported
}

func unsupportedReport(mountpoint string, opts []Option) Report {
	cfg := newConfig(opts)
	return Report{Target: mountpoint, Root: cfg.root, DryRun: cfg.dryRun}
}

// InNamespace fails: there are no mount namespaces on this platform.
func InNamespace(int, func() error) error { return ErrNotSupported }
