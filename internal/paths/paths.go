package paths

import "strings"

// Within reports whether p is dir or lies below it; both are clean and
// absolute. Every absolute path lies within "/".
func Within(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// Below reports whether p lies strictly below dir (Within, and not dir).
func Below(p, dir string) bool { return p != dir && Within(p, dir) }
