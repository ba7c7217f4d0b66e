package paths_test

import (
	"testing"

	"github.com/nsdetach/nsdetach/internal/paths"
)

func TestWithinAndBelow(t *testing.T) {
	tests := []struct {
		p, dir        string
		within, below bool
	}{
		{"/a/b", "/a", true, true},
		{"/a", "/a", true, false},
		{"/ab", "/a", false, false},
		{"/a", "/a/b", false, false},
		{"/a", "/", true, true},
		{"/", "/", true, false},
		{"/var/lib/docker2/x", "/var/lib/docker", false, false},
		{"", "/a", false, false},
	}
	for _, tc := range tests {
		if got := paths.Within(tc.p, tc.dir); got != tc.within {
			t.Errorf("Within(%q, %q) = %v, want %v", tc.p, tc.dir, got, tc.within)
		}
		if got := paths.Below(tc.p, tc.dir); got != tc.below {
			t.Errorf("Below(%q, %q) = %v, want %v", tc.p, tc.dir, got, tc.below)
		}
	}
}
