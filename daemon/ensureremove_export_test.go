package daemon

// SetRemoveAll swaps the removal the package uses until the returned func
// runs.
func SetRemoveAll(f func(string) error) (restore func()) {
	old := removeAll
	removeAll = f
	return func() { removeAll = old }
}
