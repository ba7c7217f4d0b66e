package mountns_test

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nsdetach/nsdetach/mountns"
	"golang.org/x/sys/unix"
)

// TestErrorVocabulary: the errors of bad paths carry their cause, which
// errors.Is and errors.As find, and no advice for a command line.
func TestErrorVocabulary(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	cases := []struct {
		name   string
		root   string
		target string
		is     error
		as     any
	}{
		{"root that does not exist", filepath.Join(root, "missing"), filepath.Join(root, "missing", "x"), fs.ErrNotExist, new(*mountns.PathError)},
		{"target outside the root", root, filepath.Join(outside, "x"), mountns.ErrOutsideRoot, new(*mountns.OutsideRootError)},
		{"relative target", root, "x", nil, new(*mountns.PathError)},
		{"no root", "", filepath.Join(root, "x"), nil, new(*mountns.PathError)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := mountns.ResolveUnderRoot(c.target, mountns.WithRoot(c.root))
			if err == nil {
				t.Fatal("no error")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, c.is)
			}
			if !errors.As(err, c.as) {
				t.Errorf("errors.As(%v, %T) = false", err, c.as)
			}
			if strings.Contains(err.Error(), "--root") || strings.Contains(err.Error(), "nsdetach ") {
				t.Errorf("%q gives command-line advice", err)
			}
		})
	}
	for _, errno := range []error{unix.EPERM, unix.EACCES} {
		if !errors.Is(errno, mountns.ErrNotPermitted) {
			t.Errorf("errors.Is(%v, ErrNotPermitted) = false", errno)
		}
	}
}
