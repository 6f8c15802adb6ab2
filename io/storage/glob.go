package storage

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// globPattern is a parsed Glob pattern.
type globPattern struct {
	// root is the folder to list: the longest prefix of the pattern free
	// of metacharacters, with the pattern's scheme.
	root string
	// segs are the pattern's path elements below root.
	segs []string
	// atTop is set when the first path element has metacharacters.
	atTop bool
}

// parseGlob splits pattern into the folder to list and the pattern below
// it, checking the pattern's syntax.
func parseGlob(pattern string) (globPattern, error) {
	p := filepath.ToSlash(pattern)
	if _, rest, ok := splitScheme(pattern); ok {
		p = rest
	}
	segs := strings.Split(p, "/")
	n := 0
	for n < len(segs)-1 && !hasMeta(segs[n]) {
		n++
	}
	for _, s := range segs {
		if _, err := path.Match(s, ""); err != nil && s != "**" {
			return globPattern{}, fmt.Errorf("storage: bad pattern %q: %w", pattern, err)
		}
	}
	root := strings.Join(segs[:n], "/")
	if n == 0 {
		root = "."
		if strings.HasPrefix(p, "/") {
			root = "/"
		}
	}
	return globPattern{root: pattern[:len(pattern)-len(p)] + root, segs: segs[n:], atTop: n == 0}, nil
}

// match reports whether rel, a slash-separated path below root, matches.
func (g globPattern) match(rel string) bool { return matchSegs(g.segs, strings.Split(rel, "/")) }

// globList is Glob for a backend without its own: it lists the pattern's
// fixed prefix and keeps the matches. The first path element (a bucket
// or host name) cannot have wildcards.
func globList(ctx context.Context, b Backend, pattern string) ([]string, error) {
	g, err := parseGlob(pattern)
	if err != nil {
		return nil, err
	}
	if g.atTop {
		return nil, fmt.Errorf("storage: bad pattern %q: wildcards in the bucket name", pattern)
	}
	all, err := b.List(ctx, g.root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range all {
		if g.match(Rel(g.root, u)) {
			out = append(out, u)
		}
	}
	return out, nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// matchSegs matches path elements against pattern elements, '**' matching
// any number of elements.
func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
