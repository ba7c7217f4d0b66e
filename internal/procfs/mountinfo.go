package procfs

// EscapeMountinfo writes path as /proc/PID/mountinfo writes mount points
// and roots: space, tab, newline and backslash as a backslash and three
// octal digits, every other byte as it is.
func EscapeMountinfo(path string) string {
	var b []byte
	for i := 0; i < len(path); i++ {
		switch c := path[i]; c {
		case ' ', '\t', '\n', '\\':
			b = append(b, '\\', '0'+c>>6, '0'+(c>>3)&7, '0'+c&7)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}
