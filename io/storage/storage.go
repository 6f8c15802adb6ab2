// Package storage reads and writes files through one API for local paths,
// file:// URIs, Google Cloud Storage objects (gs://bucket/object) and any
// store registered with RegisterScheme.
//
// Each scheme is served by a Backend, as in Beam's filesystem package: a
// new store (S3, Azure, an HTTP archive) is one file with a type that
// implements Backend (and WritableBackend to write) and an init function
// that calls RegisterScheme. io/dicomweb registers dicomweb://,
// dicomweb+http:// and dicomweb+https:// (read-only). A URI with any other
// scheme gives a *SchemeError.
//
// GCS access uses one client per process, created on first use. When the
// environment variable STORAGE_EMULATOR_HOST (host:port, no scheme) is set
// at that moment, the client talks plain HTTP to that emulator without
// credentials; otherwise it uses Application Default Credentials.
//
// Names in URIs with a scheme are slash-separated. A GCS "directory" is an
// object-name prefix ending in '/'.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// Info describes a file or object.
type Info struct {
	// Size is the size in bytes.
	Size int64
	// ModTime is the modification time (the object's update time on GCS).
	ModTime time.Time
	// Generation is the GCS object generation; 0 for local files.
	Generation int64
}

// ReadFile reads the whole file or object at uri. A file larger than
// maxBytes is an error, found before reading; maxBytes <= 0 means no limit.
func ReadFile(ctx context.Context, uri string, maxBytes int64) ([]byte, error) {
	r, size, err := openLimit(ctx, uri, maxBytes)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b := make([]byte, 0, max(size, 0)+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if le := (*limitError)(nil); errors.As(err, &le) {
			return nil, err
		}
		if err != nil {
			return nil, fmt.Errorf("storage: reading %s: %w", uri, err)
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
	return b, nil
}

// OpenLimit opens the file or object at uri for reading, as Open does, but
// a file larger than maxBytes is an error, found before reading, and so is
// reading past maxBytes (a file that grew since it was opened); maxBytes
// <= 0 means no limit.
func OpenLimit(ctx context.Context, uri string, maxBytes int64) (io.ReadCloser, error) {
	r, _, err := openLimit(ctx, uri, maxBytes)
	return r, err
}

// openLimit is OpenLimit, also returning the size (-1: unknown).
func openLimit(ctx context.Context, uri string, maxBytes int64) (io.ReadCloser, int64, error) {
	r, size, err := open(ctx, uri)
	if err != nil || maxBytes <= 0 {
		return r, size, err
	}
	if size > maxBytes {
		r.Close()
		return nil, 0, fmt.Errorf("storage: %s: %d bytes exceeds the limit of %d", uri, size, maxBytes)
	}
	return &limitReader{ReadCloser: r, uri: uri, max: maxBytes, left: maxBytes}, size, nil
}

// limitReader fails a read that goes past max bytes.
type limitReader struct {
	io.ReadCloser
	uri       string
	max, left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1] // one byte past the limit tells
	}
	n, err := l.ReadCloser.Read(p)
	if l.left -= int64(n); l.left < 0 {
		return n + int(l.left), &limitError{uri: l.uri, max: l.max}
	}
	return n, err
}

// limitError is a read past OpenLimit's maxBytes.
type limitError struct {
	uri string
	max int64
}

func (e *limitError) Error() string {
	return fmt.Sprintf("storage: %s: more than the limit of %d bytes", e.uri, e.max)
}

// Open opens the file or object at uri for reading.
func Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	r, _, err := open(ctx, uri)
	return r, err
}

// open opens uri and returns its size (-1: unknown).
func open(ctx context.Context, uri string) (io.ReadCloser, int64, error) {
	b, err := lookup(uri)
	if err != nil {
		return nil, 0, err
	}
	return b.Open(ctx, uri)
}

// Create creates (or truncates) the file or object at uri for writing. Local
// parent directories are created. A GCS object appears when Close returns
// without error; cancelling ctx abandons the write.
func Create(ctx context.Context, uri string) (io.WriteCloser, error) {
	b, _, err := writable(uri)
	if err != nil {
		return nil, err
	}
	return b.Create(ctx, uri)
}

// WriteFileAtomic writes data to uri so that readers see either the old
// content or all of the new: locally through a temporary file in the same
// directory and a rename; on GCS object writes are atomic already.
func WriteFileAtomic(ctx context.Context, uri string, data []byte) error {
	b, _, err := writable(uri)
	if err != nil {
		return err
	}
	if a, ok := b.(AtomicWriter); ok {
		return a.WriteFileAtomic(ctx, uri, data)
	}
	w, err := b.Create(ctx, uri)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Stat returns the size and modification time of the file or object at uri.
// A missing file or object gives an error matching fs.ErrNotExist.
func Stat(ctx context.Context, uri string) (Info, error) {
	b, err := lookup(uri)
	if err != nil {
		return Info{}, err
	}
	return b.Stat(ctx, uri)
}

// IsDir reports whether uri names a folder: a local directory (empty or
// not), or a prefix with at least one object under it.
func IsDir(ctx context.Context, uri string) (bool, error) {
	b, err := lookup(uri)
	if err != nil {
		return false, err
	}
	if d, ok := b.(DirChecker); ok {
		return d.IsDir(ctx, uri)
	}
	l, err := b.List(ctx, uri)
	return err == nil && len(l) > 0, err
}

// List returns every file (object) under dir, recursively, sorted. The
// results have the same form as dir (gs://, file:// or plain path).
func List(ctx context.Context, dir string) ([]string, error) {
	b, err := lookup(dir)
	if err != nil {
		return nil, err
	}
	return b.List(ctx, dir)
}

// Glob returns the files (objects) whose names match pattern, sorted.
// '*' matches any run of characters except '/', '?' one character, '[...]'
// a character class (as path.Match), and a path element '**' any number of
// directories (zero or more). Directories themselves are not returned. A
// backend may have its own syntax (a DICOMweb query is its own pattern).
func Glob(ctx context.Context, pattern string) ([]string, error) {
	b, err := lookup(pattern)
	if err != nil {
		return nil, err
	}
	if g, ok := b.(Globber); ok {
		return g.Glob(ctx, pattern)
	}
	return globList(ctx, b, pattern)
}

// Remove deletes the file or object at uri. A missing one is not an error.
func Remove(ctx context.Context, uri string) error {
	b, _, err := writable(uri)
	if err != nil {
		return err
	}
	return b.Remove(ctx, uri)
}

// RemoveAll deletes a folder: every object under a GCS prefix, or a local
// directory tree. A missing folder is not an error.
func RemoveAll(ctx context.Context, dir string) error {
	b, _, err := writable(dir)
	if err != nil {
		return err
	}
	if t, ok := b.(TreeRemover); ok {
		return t.RemoveAll(ctx, dir)
	}
	files, err := b.List(ctx, dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, f := range files {
		if err := b.Remove(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// Rename moves the file at src to dst, replacing dst: locally by a rename
// (creating dst's directory), elsewhere, or between two stores, by a copy
// then a delete.
func Rename(ctx context.Context, src, dst string) error {
	sb, sr, err := writable(src)
	if err != nil {
		return err
	}
	_, dr, err := writable(dst)
	if err != nil {
		return err
	}
	if r, ok := sb.(Renamer); ok && sr == dr {
		return r.Rename(ctx, src, dst)
	}
	data, err := ReadFile(ctx, src, 0)
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(ctx, dst, data); err != nil {
		return err
	}
	return sb.Remove(ctx, src)
}
