package mountns

import (
	"path/filepath"
	"strings"

	"github.com/nsdetach/nsdetach/internal/paths"
	"github.com/pkg/errors"
)

// checkPath accepts only absolute, clean paths without NUL bytes.
func checkPath(what, p string) error {
	switch {
	case p == "":
		return &PathError{Op: what, Path: p, Err: errors.New("empty path")}
	case strings.ContainsRune(p, 0):
		return &PathError{Op: what, Path: p, Err: errors.New("contains a NUL byte")}
	case !filepath.IsAbs(p):
		return &PathError{Op: what, Path: p, Err: errors.New("not absolute")}
	case filepath.Clean(p) != p:
		return &PathError{Op: what, Path: p, Err: errors.Errorf("not clean (clean: %q)", filepath.Clean(p))}
	}
	return nil
}

// guard holds the allowed root, resolved in the caller's view.
type guard struct {
	root string // as given
	real string // symlinks resolved
}

// newGuard checks the root: absolute, clean, not "/", existing.
func newGuard(root string) (*guard, error) {
	if root == "" {
		return nil, &PathError{Op: "root", Path: root, Err: errors.New("no allowed root given (WithRoot)")}
	}
	if err := checkPath("root", root); err != nil {
		return nil, err
	}
	if root == "/" {
		return nil, &PathError{Op: "root", Path: root, Err: errors.New("/ would allow detaching any mount")}
	}
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, &PathError{Op: "root", Path: root, Err: err}
	}
	if real == "/" {
		// A symlink to / passes the text check above.
		return nil, &PathError{Op: "root", Path: root, Err: errors.New("resolves to / (symlinks followed), which would allow detaching any mount")}
	}
	return &guard{root: root, real: real}, nil
}

// ResolveUnderRoot returns where p really is (symlinks resolved, as far as
// p exists) after checking that it lies under the root given with WithRoot,
// itself resolved, and that this root is not "/". Code that unmounts or
// removes a path in the caller's own namespace calls it first, so that a
// root or a path that leads through a symlink cannot make it act outside
// the root. It costs the lstat calls of the two resolutions, no scan.
func ResolveUnderRoot(p string, opts ...Option) (string, error) {
	g, err := newGuard(newConfig(opts).root)
	if err != nil {
		return "", err
	}
	return g.resolve(p)
}

// resolve maps a target given under the root into the root's real path, and
// refuses one outside it. An existing target is resolved in full, so a
// symlink inside the root cannot lead outside it.
func (g *guard) resolve(target string) (string, error) {
	if err := checkPath("mount point", target); err != nil {
		return "", err
	}
	var rel string
	switch {
	case paths.Within(target, g.real):
		rel = strings.TrimPrefix(target, g.real)
	case paths.Within(target, g.root):
		rel = strings.TrimPrefix(target, g.root)
	default:
		return "", &OutsideRootError{Path: target, Root: g.root}
	}
	p := resolveExisting(filepath.Join(g.real, rel))
	if !paths.Within(p, g.real) {
		return "", &OutsideRootError{Path: target, Root: g.root}
	}
	return p, nil
}

// allows reports whether a matched mount may be detached: its place in the
// caller's view, or for an overlay its upper directory, is under the root.
func (g *guard) allows(m Mount) bool {
	if m.HostPath != "" && paths.Within(m.HostPath, g.real) {
		return true
	}
	return m.MatchedBy == MatchedByUpperDir && m.UpperDir != "" && paths.Within(m.UpperDir, g.real)
}

// resolveExisting resolves the symlinks of the longest leading part of p
// that exists and appends the rest, so that a missing last component does
// not leave a symlink earlier in the path unresolved.
func resolveExisting(p string) string {
	rest := ""
	for {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(real, rest)
		}
		if p == "/" {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = filepath.Dir(p)
	}
}
