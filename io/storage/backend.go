package storage

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Backend is a store that serves the URIs of one scheme: the local file
// system (plain paths and file://), Google Cloud Storage (gs://), or one
// registered with RegisterScheme. Every URI passed to a Backend has its
// scheme (any case), except plain local paths.
//
// A Backend reads. One that also implements WritableBackend writes; the
// other optional interfaces (Globber, AtomicWriter, Renamer, TreeRemover,
// DirChecker) replace the generic way of doing their call, which is built
// on the required methods.
type Backend interface {
	// Open opens the file at uri and returns its size, or -1 when unknown.
	Open(ctx context.Context, uri string) (io.ReadCloser, int64, error)
	// Stat describes the file at uri; a missing file gives an error
	// matching fs.ErrNotExist.
	Stat(ctx context.Context, uri string) (Info, error)
	// List returns every file under the folder dir, recursively, sorted,
	// as URIs of the same form as dir.
	List(ctx context.Context, dir string) ([]string, error)
}

// WritableBackend is a Backend that writes. Without it a scheme is
// read-only: writes give a *SchemeError.
type WritableBackend interface {
	Backend
	// Create creates or truncates the file at uri for writing, and any
	// folder it needs.
	Create(ctx context.Context, uri string) (io.WriteCloser, error)
	// Remove deletes the file at uri; a missing file is not an error.
	Remove(ctx context.Context, uri string) error
}

// Globber is a Backend with its own Glob: a faster one, or one with its
// own pattern syntax. Without it, Glob lists the pattern's fixed prefix
// and matches what List returns.
type Globber interface {
	Glob(ctx context.Context, pattern string) ([]string, error)
}

// AtomicWriter is a WritableBackend whose Create is not atomic (a reader
// may see part of the file). Without it, WriteFileAtomic writes through
// Create, as object stores publish an object whole when its writer closes.
type AtomicWriter interface {
	WriteFileAtomic(ctx context.Context, uri string, data []byte) error
}

// Renamer is a WritableBackend that moves files within itself. Without it,
// Rename copies and deletes.
type Renamer interface {
	Rename(ctx context.Context, src, dst string) error
}

// TreeRemover is a WritableBackend that deletes a folder itself. Without
// it, RemoveAll deletes every file List returns.
type TreeRemover interface {
	RemoveAll(ctx context.Context, dir string) error
}

// DirChecker is a Backend with folders of their own (that may be empty).
// Without it, a folder is a prefix with at least one file under it.
type DirChecker interface {
	IsDir(ctx context.Context, uri string) (bool, error)
}

// SchemeError is the error of a URI whose scheme no backend serves, or of
// a write to a read-only scheme.
type SchemeError struct {
	URI    string
	Scheme string
	// ReadOnly is set when the scheme is registered but cannot write.
	ReadOnly bool
}

func (e *SchemeError) Error() string {
	if e.ReadOnly {
		return fmt.Sprintf("storage: %q: unsupported scheme for writing (%s:// is read-only)", e.URI, e.Scheme)
	}
	return fmt.Sprintf("storage: %q: unsupported scheme", e.URI)
}

// registration is one registered backend; the schemes it serves share it.
type registration struct {
	b       Backend
	builtin bool
}

var (
	backendsMu sync.RWMutex
	backends   = map[string]*registration{}
)

// RegisterScheme makes b serve the URIs starting with scheme+"://" (any
// case). Register in an init function, so that every worker process knows
// the scheme. Registering a scheme again replaces its backend; the
// built-in schemes (file, gs) cannot be replaced.
func RegisterScheme(scheme string, b Backend) {
	s := strings.ToLower(scheme)
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if !validScheme(s) || b == nil || backends[s] != nil && backends[s].builtin {
		panic(fmt.Sprintf("storage: cannot register scheme %q", scheme))
	}
	backends[s] = &registration{b: b}
}

// registerBuiltin registers one of this package's backends for schemes;
// "" is the scheme of plain local paths.
func registerBuiltin(b Backend, schemes ...string) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	r := &registration{b: b, builtin: true}
	for _, s := range schemes {
		backends[s] = r
	}
}

// ValidateScheme returns a *SchemeError when no backend serves uri.
func ValidateScheme(uri string) error {
	_, err := lookup(uri)
	return err
}

// lookup returns the backend that serves uri.
func lookup(uri string) (Backend, error) {
	r, err := registered(uri)
	if err != nil {
		return nil, err
	}
	return r.b, nil
}

// registered returns the registration of uri's scheme.
func registered(uri string) (*registration, error) {
	scheme, _, ok := splitScheme(uri)
	if !ok && strings.Contains(uri, "://") {
		return nil, &SchemeError{URI: uri, Scheme: strings.SplitN(uri, "://", 2)[0]}
	}
	backendsMu.RLock()
	r := backends[scheme]
	backendsMu.RUnlock()
	if r == nil {
		return nil, &SchemeError{URI: uri, Scheme: scheme}
	}
	return r, nil
}

// writable returns the backend that serves uri, which must write, and its
// registration.
func writable(uri string) (WritableBackend, *registration, error) {
	r, err := registered(uri)
	if err != nil {
		return nil, nil, err
	}
	w, ok := r.b.(WritableBackend)
	if !ok {
		scheme, _, _ := splitScheme(uri)
		return nil, nil, &SchemeError{URI: uri, Scheme: scheme, ReadOnly: true}
	}
	return w, r, nil
}

// splitScheme splits scheme://rest into its lower-case scheme and rest. ok
// is false for a plain path, or a string whose part before "://" is not
// a scheme (RFC 3986: a letter, then letters, digits, '+', '-' or '.').
func splitScheme(uri string) (scheme, rest string, ok bool) {
	scheme, rest, ok = strings.Cut(uri, "://")
	if !ok || !validScheme(strings.ToLower(scheme)) {
		return "", uri, false
	}
	return strings.ToLower(scheme), rest, true
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
