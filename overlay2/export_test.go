package overlay2

// SetRmdir swaps the rmdir the package uses until the returned func runs.
func SetRmdir(f func(string) error) (restore func()) {
	old := rmdir
	rmdir = f
	return func() { rmdir = old }
}
