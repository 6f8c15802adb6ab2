package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multiad/multiad/io/storage"
)

// memFS is a whole new store in a few lines: the three reading methods of
// storage.Backend and the two of storage.WritableBackend, nothing else.
type memFS struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (m *memFS) Open(_ context.Context, uri string) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[uri]
	if !ok {
		return nil, 0, fmt.Errorf("memfs: %s: %w", uri, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

func (m *memFS) Stat(_ context.Context, uri string) (storage.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.files[uri]
	if !ok {
		return storage.Info{}, fmt.Errorf("memfs: %s: %w", uri, fs.ErrNotExist)
	}
	return storage.Info{Size: int64(len(b)), ModTime: time.Unix(1, 0)}, nil
}

func (m *memFS) List(_ context.Context, dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name := range m.files {
		if strings.HasPrefix(name, strings.TrimSuffix(dir, "/")+"/") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *memFS) Create(_ context.Context, uri string) (io.WriteCloser, error) {
	return &memWriter{m: m, uri: uri}, nil
}

func (m *memFS) Remove(_ context.Context, uri string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, uri)
	return nil
}

// memWriter publishes its file whole on Close, as an object store does.
type memWriter struct {
	bytes.Buffer
	m   *memFS
	uri string
}

func (w *memWriter) Close() error {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	w.m.files[w.uri] = bytes.Clone(w.Bytes())
	return nil
}

// TestNewBackend: a store registered under a test scheme works through the
// whole public API, Glob and RemoveAll included, with the same results as
// the local file system for the same tree.
func TestNewBackend(t *testing.T) {
	ctx := context.Background()
	mem := &memFS{files: map[string][]byte{}}
	storage.RegisterScheme("memtest", mem)
	root := "memtest://bkt/data"
	for _, f := range files {
		if err := storage.WriteFileAtomic(ctx, storage.Join(root, f), []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	if len(mem.files) != len(files) {
		t.Fatalf("the backend holds %d files, want %d", len(mem.files), len(files))
	}
	// Reads.
	d := storage.Join(root, "x", "y", "d.txt")
	if d != "memtest://bkt/data/x/y/d.txt" || storage.Dir(d) != "memtest://bkt/data/x/y" || storage.Rel(root, d) != "x/y/d.txt" {
		t.Errorf("Join/Dir/Rel: %s, %s, %s", d, storage.Dir(d), storage.Rel(root, d))
	}
	if b, err := storage.ReadFile(ctx, d, 0); err != nil || string(b) != "x/y/d.txt" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := storage.ReadFile(ctx, d, 3); err == nil || !strings.Contains(err.Error(), "exceeds the limit of 3") {
		t.Errorf("ReadFile over the limit: %v", err)
	}
	if st, err := storage.Stat(ctx, d); err != nil || st.Size != int64(len("x/y/d.txt")) {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	if _, err := storage.Stat(ctx, root+"/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing file: %v", err)
	}
	// Listing and globbing give what they give on the local file system.
	dir := tree(t, files...)
	local, err := storage.List(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := storage.List(ctx, root)
	if err != nil || !reflect.DeepEqual(rels(root, got), rels(dir, local)) {
		t.Errorf("List = %v, %v; local %v", got, err, local)
	}
	for _, pattern := range []string{"*.txt", "**/*.txt", "x/**/*.dcm", "x/**", "*/y/e[0-1].dcm", "?/c.txt", "x/y/d.txt", "nothing/*.txt", "*.png"} {
		want, err := storage.Glob(ctx, filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		got, err := storage.Glob(ctx, root+"/"+pattern)
		if err != nil || !reflect.DeepEqual(rels(root, got), rels(dir, want)) {
			t.Errorf("Glob(%s) = %v, %v; local %v", pattern, got, err, want)
		}
	}
	if _, err := storage.Glob(ctx, root+"/["); err == nil || !strings.Contains(err.Error(), "bad pattern") {
		t.Errorf("bad pattern: %v", err)
	}
	if _, err := storage.Glob(ctx, "memtest://b*/x"); err == nil || !strings.Contains(err.Error(), "bucket name") {
		t.Errorf("wildcard in the bucket name: %v", err)
	}
	for uri, want := range map[string]bool{root + "/x": true, root + "/x/c.txt": false, root + "/none": false} {
		if got, err := storage.IsDir(ctx, uri); got != want || err != nil {
			t.Errorf("IsDir(%s) = %v, %v", uri, got, err)
		}
	}
	// Writes.
	w, err := storage.Create(ctx, root+"/new.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := storage.Open(ctx, root+"/new.bin")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(r); string(b) != "hello" {
		t.Errorf("read back %q", b)
	}
	r.Close()
	if err := storage.Rename(ctx, root+"/new.bin", root+"/z/moved.bin"); err != nil {
		t.Fatal(err)
	}
	if _, ok := mem.files[root+"/new.bin"]; ok || string(mem.files[root+"/z/moved.bin"]) != "hello" {
		t.Errorf("after Rename: %v", mem.files)
	}
	if err := storage.Remove(ctx, root+"/a.txt"); err != nil {
		t.Fatal(err)
	}
	if err := storage.RemoveAll(ctx, root+"/x"); err != nil {
		t.Fatal(err)
	}
	got, _ = storage.List(ctx, root)
	if want := []string{root + "/b.dcm", root + "/z/f.txt", root + "/z/moved.bin"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Remove and RemoveAll: %v, want %v", got, want)
	}
	// Between two stores, Rename copies.
	if err := storage.Rename(ctx, root+"/b.dcm", filepath.Join(dir, "from-mem.dcm")); err != nil {
		t.Fatal(err)
	}
	if b, err := storage.ReadFile(ctx, filepath.Join(dir, "from-mem.dcm"), 0); err != nil || string(b) != "b.dcm" {
		t.Errorf("copied %q, %v", b, err)
	}
	if _, err := storage.Stat(ctx, root+"/b.dcm"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Rename left the source: %v", err)
	}
	if err := storage.Rename(ctx, filepath.Join(dir, "a.txt"), root+"/from-local.txt"); err != nil {
		t.Fatal(err)
	}
	if string(mem.files[root+"/from-local.txt"]) != "a.txt" {
		t.Errorf("copied from local: %q", mem.files[root+"/from-local.txt"])
	}
	if p, ok := storage.LocalPath(root + "/z/f.txt"); ok {
		t.Errorf("LocalPath of a memtest URI = %q", p)
	}
}

// rels makes uris relative to base.
func rels(base string, uris []string) []string {
	var out []string
	for _, u := range uris {
		out = append(out, storage.Rel(base, u))
	}
	return out
}

// roFS is a read-only store with its own pattern syntax, as io/dicomweb's.
type roFS map[string]string

func (m roFS) Open(_ context.Context, uri string) (io.ReadCloser, int64, error) {
	s, ok := m[uri]
	if !ok {
		return nil, 0, fs.ErrNotExist
	}
	return io.NopCloser(strings.NewReader(s)), -1, nil
}

func (m roFS) Stat(_ context.Context, uri string) (storage.Info, error) {
	s, ok := m[uri]
	if !ok {
		return storage.Info{}, fs.ErrNotExist
	}
	return storage.Info{Size: int64(len(s))}, nil
}

func (m roFS) List(_ context.Context, dir string) ([]string, error) {
	return []string{dir + "/a"}, nil
}

func (m roFS) Glob(_ context.Context, pattern string) ([]string, error) {
	return []string{pattern + "#glob"}, nil
}

func TestReadOnlyBackend(t *testing.T) {
	storage.RegisterScheme("rotest", roFS{"rotest://h/a": "hello"})
	ctx := context.Background()
	for _, uri := range []string{"rotest://h/a", "ROTEST://h/a"} {
		if err := storage.ValidateScheme(uri); err != nil {
			t.Errorf("ValidateScheme(%s): %v", uri, err)
		}
	}
	b, err := storage.ReadFile(ctx, "rotest://h/a", 0)
	if err != nil || string(b) != "hello" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := storage.ReadFile(ctx, "rotest://h/a", 3); err == nil {
		t.Error("ReadFile over the limit (size unknown): no error")
	}
	if _, err := storage.Stat(ctx, "rotest://h/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat missing: %v", err)
	}
	if got, _ := storage.List(ctx, "rotest://h"); !reflect.DeepEqual(got, []string{"rotest://h/a"}) {
		t.Errorf("List = %v", got)
	}
	if got, _ := storage.Glob(ctx, "rotest://h?x=*"); !reflect.DeepEqual(got, []string{"rotest://h?x=*#glob"}) {
		t.Errorf("Glob = %v (not the backend's own)", got)
	}
	for name, err := range map[string]error{
		"Create":          func() error { _, err := storage.Create(ctx, "rotest://h/b"); return err }(),
		"WriteFileAtomic": storage.WriteFileAtomic(ctx, "rotest://h/b", nil),
		"Remove":          storage.Remove(ctx, "rotest://h/a"),
		"RemoveAll":       storage.RemoveAll(ctx, "rotest://h"),
		"Rename":          storage.Rename(ctx, "rotest://h/a", t.TempDir()+"/a"),
	} {
		var se *storage.SchemeError
		if !errors.As(err, &se) || !se.ReadOnly || se.Scheme != "rotest" || !strings.Contains(err.Error(), `"rotest://h`) {
			t.Errorf("%s on a read-only scheme: %v", name, err)
		}
	}
}

// TestUnknownScheme: every call on a URI that no backend serves gives a
// *SchemeError naming the URI and its scheme.
func TestUnknownScheme(t *testing.T) {
	ctx := context.Background()
	const uri = "nosuch://h/a"
	calls := map[string]func() error{
		"ValidateScheme":  func() error { return storage.ValidateScheme(uri) },
		"ReadFile":        func() error { _, err := storage.ReadFile(ctx, uri, 0); return err },
		"Open":            func() error { _, err := storage.Open(ctx, uri); return err },
		"Stat":            func() error { _, err := storage.Stat(ctx, uri); return err },
		"IsDir":           func() error { _, err := storage.IsDir(ctx, uri); return err },
		"List":            func() error { _, err := storage.List(ctx, uri); return err },
		"Glob":            func() error { _, err := storage.Glob(ctx, uri+"/*.dcm"); return err },
		"Create":          func() error { _, err := storage.Create(ctx, uri); return err },
		"WriteFileAtomic": func() error { return storage.WriteFileAtomic(ctx, uri, nil) },
		"Remove":          func() error { return storage.Remove(ctx, uri) },
		"RemoveAll":       func() error { return storage.RemoveAll(ctx, uri) },
		"Rename":          func() error { return storage.Rename(ctx, uri, uri+"2") },
	}
	for name, call := range calls {
		err := call()
		var se *storage.SchemeError
		if !errors.As(err, &se) || se.Scheme != "nosuch" || se.ReadOnly || !strings.HasPrefix(se.URI, uri) ||
			!strings.Contains(err.Error(), `"`+se.URI+`": unsupported scheme`) {
			t.Errorf("%s(%s) = %v, want a *SchemeError", name, uri, err)
		}
	}
	// Not a scheme: a malformed one is refused too, a plain path is local.
	var se *storage.SchemeError
	if err := storage.ValidateScheme("no such://h"); !errors.As(err, &se) {
		t.Errorf("malformed scheme: %v", err)
	}
	if err := storage.ValidateScheme("dir/a:b.txt"); err != nil {
		t.Errorf("local path: %v", err)
	}
	if _, ok := storage.LocalPath(uri); ok {
		t.Error("LocalPath accepted an unknown scheme")
	}
}

func TestRegisterSchemeRefusals(t *testing.T) {
	for _, bad := range []string{"", "gs", "GS", "file", "1x", "a b", "x:"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterScheme(%q) did not panic", bad)
				}
			}()
			storage.RegisterScheme(bad, roFS{})
		}()
	}
}
