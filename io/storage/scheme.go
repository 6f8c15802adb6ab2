package storage

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Backend serves the URIs of a scheme registered with RegisterScheme, for
// read-only sources such as DICOMweb archives. Every URI passed to a
// Backend starts with its scheme and "://".
type Backend interface {
	// Open opens the file at uri and returns its size, or -1 when unknown.
	Open(ctx context.Context, uri string) (io.ReadCloser, int64, error)
	// Stat describes the file at uri; a missing file gives an error
	// matching fs.ErrNotExist.
	Stat(ctx context.Context, uri string) (Info, error)
	// List returns every file under dir, sorted.
	List(ctx context.Context, dir string) ([]string, error)
	// Glob returns the files matching pattern, sorted, in the backend's
	// own pattern syntax.
	Glob(ctx context.Context, pattern string) ([]string, error)
}

var (
	schemesMu sync.RWMutex
	schemes   = map[string]Backend{}
)

// RegisterScheme routes ReadFile, Open, Stat, List and Glob of URIs
// starting with scheme+"://" to b. Register in an init function, so that
// every worker process knows the scheme. The built-in schemes (gs, file)
// cannot be replaced; registering a scheme again replaces its backend.
// Create and WriteFileAtomic do not support registered schemes.
func RegisterScheme(scheme string, b Backend) {
	if scheme == "" || scheme == "gs" || scheme == "file" || strings.Contains(scheme, ":") {
		panic(fmt.Sprintf("storage: cannot register scheme %q", scheme))
	}
	schemesMu.Lock()
	defer schemesMu.Unlock()
	schemes[strings.ToLower(scheme)] = b
}

// Registered reports whether uri uses a scheme registered with
// RegisterScheme.
func Registered(uri string) bool { return backend(uri) != nil }

// backend returns the registered backend for uri's scheme, or nil.
func backend(uri string) Backend {
	scheme, _, ok := strings.Cut(uri, "://")
	if !ok || scheme == "" {
		return nil
	}
	schemesMu.RLock()
	defer schemesMu.RUnlock()
	return schemes[strings.ToLower(scheme)]
}
