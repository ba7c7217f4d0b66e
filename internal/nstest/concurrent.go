package nstest

import (
	"fmt"
	"sync"
	"testing"
)

// IDs returns n container or layer ids, c00, c01 and so on, for the
// fixtures of a test that races n callers.
func IDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%02d", i)
	}
	return ids
}

// Race runs fn(0) .. fn(n-1) at once, plus a second fn(n-1) racing the
// first, and reports every error by its caller's number.
func Race(t testing.TB, n int, fn func(i int) error) {
	t.Helper()
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	for i := 0; i <= n; i++ {
		wg.Add(1)
		go func(caller int) {
			defer wg.Done()
			arg := caller
			if caller == n {
				arg = n - 1
			}
			errs[caller] = fn(arg)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
}
