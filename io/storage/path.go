package storage

import (
	"path"
	"path/filepath"
	"strings"
)

// The names in URIs with a scheme are slash-separated (RFC 3986), whatever
// the store; plain local paths use the operating system's separator.

// Join joins path elements onto base, for URIs with a scheme (gs://,
// file://, ...) and local paths alike.
func Join(base string, elem ...string) string {
	if _, rest, ok := splitScheme(base); ok {
		return base[:len(base)-len(rest)] + path.Join(append([]string{rest}, elem...)...)
	}
	return filepath.Join(append([]string{base}, elem...)...)
}

// Dir returns all but the last element of uri: gs://b/x/y gives gs://b/x,
// and gs://b/x gives gs://b.
func Dir(uri string) string {
	scheme, rest, ok := splitScheme(uri)
	if !ok {
		return filepath.Dir(uri)
	}
	prefix := uri[:len(uri)-len(rest)]
	rest = strings.TrimSuffix(rest, "/")
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		rest = rest[:i]
	} else if scheme == "file" {
		rest = "."
	}
	return prefix + rest
}

// Rel returns uri relative to base, slash-separated, for a uri under base
// as List returns it: gs://b/run/x/y.png under gs://b/run gives x/y.png.
func Rel(base, uri string) string {
	if _, _, ok := splitScheme(base); !ok {
		base, uri = filepath.ToSlash(base), filepath.ToSlash(uri)
	}
	return strings.TrimPrefix(strings.TrimPrefix(uri, strings.TrimSuffix(base, "/")), "/")
}
