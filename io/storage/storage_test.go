package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/io/storage/gcstest"
)

var emu *gcstest.Server

func TestMain(m *testing.M) {
	var err error
	emu, err = gcstest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	storage.ResetClient()
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

// tree creates files under a temporary directory and returns it.
func tree(t *testing.T, files ...string) string {
	dir := t.TempDir()
	for _, f := range files {
		if err := storage.WriteFileAtomic(context.Background(), filepath.Join(dir, f), []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var files = []string{"a.txt", "b.dcm", "x/c.txt", "x/y/d.txt", "x/y/e1.dcm", "x/y/e2.dcm", "z/f.txt"}

func TestLocalReadWrite(t *testing.T) {
	ctx := context.Background()
	dir := tree(t, files...)
	p := filepath.Join(dir, "x", "y", "d.txt")
	for _, uri := range []string{p, "file://" + p} {
		b, err := storage.ReadFile(ctx, uri, 0)
		if err != nil || string(b) != "x/y/d.txt" {
			t.Errorf("ReadFile(%s) = %q, %v", uri, b, err)
		}
		st, err := storage.Stat(ctx, uri)
		if err != nil || st.Size != int64(len("x/y/d.txt")) || st.ModTime.IsZero() {
			t.Errorf("Stat(%s) = %+v, %v", uri, st, err)
		}
	}
	if _, err := storage.ReadFile(ctx, p, 3); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("maxBytes 3: %v", err)
	}
	if _, err := storage.ReadFile(ctx, filepath.Join(dir, "nope"), 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := storage.Stat(ctx, dir); err == nil {
		t.Error("Stat of a directory succeeded")
	}
	w, err := storage.Create(ctx, filepath.Join(dir, "new", "deep", "f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "new", "deep", "f.bin")); string(b) != "hello" {
		t.Errorf("Create wrote %q", b)
	}
	// WriteFileAtomic replaces and leaves no temporary file behind.
	if err := storage.WriteFileAtomic(ctx, p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if b, _ := os.ReadFile(p); string(b) != "new" || len(ents) != 3 {
		t.Errorf("after WriteFileAtomic: %q, %d entries", b, len(ents))
	}
}

func TestLocalGlobList(t *testing.T) {
	ctx := context.Background()
	dir := tree(t, files...)
	abs := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, filepath.Join(dir, n))
		}
		return out
	}
	cases := []struct {
		pattern string
		want    []string
	}{
		{"*.txt", abs("a.txt")},
		{"**/*.txt", abs("a.txt", "x/c.txt", "x/y/d.txt", "z/f.txt")},
		{"x/**/*.dcm", abs("x/y/e1.dcm", "x/y/e2.dcm")},
		{"x/**", abs("x/c.txt", "x/y/d.txt", "x/y/e1.dcm", "x/y/e2.dcm")},
		{"*/y/e[0-1].dcm", abs("x/y/e1.dcm")},
		{"?/c.txt", abs("x/c.txt")},
		{"x/y/d.txt", abs("x/y/d.txt")},
		{"nothing/*.txt", nil},
		{"*.png", nil},
	}
	for _, c := range cases {
		got, err := storage.Glob(ctx, filepath.Join(dir, c.pattern))
		if err != nil {
			t.Errorf("%s: %v", c.pattern, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Glob(%s) = %v, want %v", c.pattern, got, c.want)
		}
		// Without '**', the standard library's Glob is the reference.
		if !strings.Contains(c.pattern, "**") {
			ref, _ := filepath.Glob(filepath.Join(dir, c.pattern))
			var refFiles []string
			for _, r := range ref {
				if st, err := os.Stat(r); err == nil && !st.IsDir() {
					refFiles = append(refFiles, r)
				}
			}
			if !reflect.DeepEqual(got, refFiles) {
				t.Errorf("Glob(%s) = %v, filepath.Glob %v", c.pattern, got, refFiles)
			}
		}
	}
	if _, err := storage.Glob(ctx, filepath.Join(dir, "[")); err == nil {
		t.Error("bad pattern accepted")
	}
	got, err := storage.List(ctx, dir)
	if err != nil || !reflect.DeepEqual(got, abs(files...)) {
		t.Errorf("List = %v, %v", got, err)
	}
	got, err = storage.Glob(ctx, "file://"+dir+"/x/*.txt")
	if err != nil || !reflect.DeepEqual(got, []string{"file://" + dir + "/x/c.txt"}) {
		t.Errorf("file:// Glob = %v, %v", got, err)
	}
}

func TestJoinDir(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{storage.Join("gs://b", "x", "y.dcm"), "gs://b/x/y.dcm"},
		{storage.Join("gs://b/dir/", "y.dcm"), "gs://b/dir/y.dcm"},
		{storage.Join("/tmp/a", "b", "c"), "/tmp/a/b/c"},
		{storage.Join("file:///tmp/a", "b"), "file:///tmp/a/b"},
		{storage.Dir("gs://b/x/y.dcm"), "gs://b/x"},
		{storage.Dir("gs://b/y.dcm"), "gs://b"},
		{storage.Dir("/tmp/a/b"), "/tmp/a"},
		{storage.Dir("file:///tmp/a/b"), "file:///tmp/a"},
		{storage.Dir("rel.txt"), "."},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	for _, c := range []struct{ base, uri, want string }{
		{"gs://b/run", "gs://b/run/x/y.png", "x/y.png"},
		{"gs://b/run/", "gs://b/run/x", "x"},
		{"/tmp/run", "/tmp/run/x/y.png", "x/y.png"},
		{"file:///tmp/run", "file:///tmp/run/s.json", "s.json"},
	} {
		if got := storage.Rel(c.base, c.uri); got != c.want {
			t.Errorf("Rel(%s, %s) = %q, want %q", c.base, c.uri, got, c.want)
		}
	}
	for uri, want := range map[string]string{"/tmp/x": "/tmp/x", "rel/x": "rel/x", "file:///tmp/x": "/tmp/x", "file://localhost/tmp/x": "/tmp/x",
		"gs://b/o": "", "file://host/x": "", "s3://b/x": ""} {
		if got, ok := storage.LocalPath(uri); got != want || ok != (want != "") {
			t.Errorf("LocalPath(%s) = %q, %v; want %q", uri, got, ok, want)
		}
	}
}

func TestLocalDirRename(t *testing.T) {
	ctx := context.Background()
	dir := tree(t, "a.txt", "x/b.txt")
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{dir: true, "file://" + filepath.Join(dir, "x"): true, filepath.Join(dir, "empty"): true, filepath.Join(dir, "a.txt"): false} {
		if got, err := storage.IsDir(ctx, p); got != want || err != nil {
			t.Errorf("IsDir(%s) = %v, %v", p, got, err)
		}
	}
	if ok, err := storage.IsDir(ctx, filepath.Join(dir, "none")); ok || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("IsDir of a missing folder = %v, %v", ok, err)
	}
	// A rename, not a copy: the file keeps its inode.
	src, dst := filepath.Join(dir, "x", "b.txt"), filepath.Join(dir, "new", "deep", "b.txt")
	before, _ := os.Stat(src)
	if err := storage.Rename(ctx, "file://"+src, dst); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(dst)
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("Rename: %v, same file %v", err, err == nil && os.SameFile(before, after))
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Errorf("Rename left %s", src)
	}
}

// sharedFiles are real files uploaded to the emulator.
func sharedFiles(t *testing.T) map[string]string {
	return map[string]string{
		"dicom/IM0000.dcm":      shared.MustPath(t, "data", "medical", "lgg_dicom", "series", "TCGA_FG_6691_20020405", "IM0000.dcm"),
		"nifti/standard.nii.gz": shared.MustPath(t, "data", "decoders", "nifti", "standard.nii.gz"),
		"jpeg/a/tile.jpg":       magneticTile(t),
	}
}

func magneticTile(t *testing.T) string {
	names, _ := filepath.Glob(filepath.Join(shared.MustPath(t, "data", "industrial", "magnetic_tile", "test", "good"), "*.jpg"))
	if len(names) == 0 {
		t.Fatal("no magnetic tile JPEGs")
	}
	return names[0]
}

func TestGCS(t *testing.T) {
	ctx := context.Background()
	src := sharedFiles(t)
	want := map[string][]byte{}
	for name, p := range src {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		emu.Put("bkt", "data/"+name, b)
		want["gs://bkt/data/"+name] = b
	}
	for uri, b := range want {
		got, err := storage.ReadFile(ctx, uri, 0)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("ReadFile(%s): %d bytes, %v", uri, len(got), err)
		}
		st, err := storage.Stat(ctx, uri)
		if err != nil || st.Size != int64(len(b)) || st.Generation == 0 {
			t.Errorf("Stat(%s) = %+v, %v", uri, st, err)
		}
		if _, err := storage.ReadFile(ctx, uri, int64(len(b)-1)); err == nil {
			t.Errorf("ReadFile(%s) ignored maxBytes", uri)
		}
	}
	if _, err := storage.ReadFile(ctx, "gs://bkt/data/missing", 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing object: %v", err)
	}
	if _, err := storage.Stat(ctx, "gs://bkt/data/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of missing object: %v", err)
	}
	got, err := storage.List(ctx, "gs://bkt/data")
	if err != nil || !reflect.DeepEqual(got, []string{"gs://bkt/data/dicom/IM0000.dcm", "gs://bkt/data/jpeg/a/tile.jpg", "gs://bkt/data/nifti/standard.nii.gz"}) {
		t.Errorf("List = %v, %v", got, err)
	}
	for pattern, exp := range map[string][]string{
		"gs://bkt/data/**/*.jpg":   {"gs://bkt/data/jpeg/a/tile.jpg"},
		"gs://bkt/data/*/*.nii.gz": {"gs://bkt/data/nifti/standard.nii.gz"},
		"gs://bkt/**/IM[0-9]*.dcm": {"gs://bkt/data/dicom/IM0000.dcm"},
		"gs://bkt/data/*.jpg":      nil,
		"gs://bkt/data/jpeg/?/*":   {"gs://bkt/data/jpeg/a/tile.jpg"},
	} {
		got, err := storage.Glob(ctx, pattern)
		if err != nil || !reflect.DeepEqual(got, exp) {
			t.Errorf("Glob(%s) = %v, %v; want %v", pattern, got, err, exp)
		}
	}
	// Writes.
	w, err := storage.Create(ctx, "gs://bkt/out/report.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, `{"ok":true}`); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := storage.ReadFile(ctx, "gs://bkt/out/report.json", 0); err != nil || string(b) != `{"ok":true}` {
		t.Errorf("read back %q, %v", b, err)
	}
	if err := storage.WriteFileAtomic(ctx, "gs://bkt/out/report.json", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	r, err := storage.Open(ctx, "gs://bkt/out/report.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "v2" {
		t.Errorf("after WriteFileAtomic: %q", b)
	}
	if _, err := storage.Create(ctx, "gs://bkt/"); err == nil {
		t.Error("Create of a bucket root succeeded")
	}
	var se *storage.SchemeError
	if _, err := storage.ReadFile(ctx, "s3://bkt/x", 0); !errors.As(err, &se) {
		t.Errorf("s3://: %v", err)
	}
	// Folders are prefixes; Rename copies then deletes.
	for uri, want := range map[string]bool{"gs://bkt/data": true, "gs://bkt/data/jpeg/": true, "gs://bkt/dat": false, "gs://bkt/data/dicom/IM0000.dcm": false} {
		if got, err := storage.IsDir(ctx, uri); got != want || err != nil {
			t.Errorf("IsDir(%s) = %v, %v", uri, got, err)
		}
	}
	if err := storage.Rename(ctx, "gs://bkt/out/report.json", "gs://bkt/out2/r.json"); err != nil {
		t.Fatal(err)
	}
	if got, err := storage.List(ctx, "gs://bkt/out2"); err != nil || !reflect.DeepEqual(got, []string{"gs://bkt/out2/r.json"}) {
		t.Errorf("after Rename: %v, %v", got, err)
	}
	if _, err := storage.Stat(ctx, "gs://bkt/out/report.json"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Rename left the source: %v", err)
	}
}

// TestOpenLimit: a file over the limit fails before reading, one at the
// limit reads whole, and one that grows past the limit after it was opened
// fails the read that passes the limit.
func TestOpenLimit(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "f.csv")
	if err := os.WriteFile(p, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.OpenLimit(ctx, p, 4); err == nil || !strings.Contains(err.Error(), "exceeds the limit of 4") {
		t.Errorf("5 bytes, limit 4: %v", err)
	}
	r, err := storage.OpenLimit(ctx, p, 5)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); string(b) != "12345" || err != nil {
		t.Errorf("5 bytes, limit 5: %q, %v", b, err)
	}
	r.Close()
	if r, err = storage.OpenLimit(ctx, p, 6); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := os.WriteFile(p, []byte("123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); string(b) != "123456" || err == nil || !strings.Contains(err.Error(), "more than the limit of 6 bytes") {
		t.Errorf("grown to 9 bytes, limit 6: %q, %v", b, err)
	}
}
