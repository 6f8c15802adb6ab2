package nifti

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
)

// GzipBytes gzips b at the best compression (for this package's tests,
// internal and external).
func GzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestInflateAll: libdeflate's one-call inflation gives compress/gzip's
// bytes, declines (without an error) what it cannot do in one call, and a
// .nii.gz decodes to the same slices by either path as its plain .nii.
func TestInflateAll(t *testing.T) {
	dir := shared.MustPath(t, "data", "decoders", "nifti")
	files, _ := filepath.Glob(filepath.Join(dir, "*.nii.gz"))
	if len(files) == 0 {
		t.Fatalf("no .nii.gz in %s", dir)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			t.Fatal(err)
		}
		want, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		got, ok, err := inflateAll(src, int64(len(want)))
		if err != nil || ok != haveLibdeflate {
			t.Fatalf("%s: ok %v, err %v; want ok %v", name, ok, err, haveLibdeflate)
		}
		if ok && !bytes.Equal(got, want) {
			t.Errorf("%s: libdeflate's bytes differ from compress/gzip's", name)
		}
		if _, ok, err := inflateAll(src, int64(len(want))+1); ok || err != nil {
			t.Errorf("%s: needing one byte more than the data: ok %v, err %v", name, ok, err)
		}
		// Two gzip members: the trailer gives only the second's length, so
		// one call cannot do it; Decode streams both and gives the slices of
		// the plain file.
		half := len(want) / 2
		multi := append(GzipBytes(t, want[:half]), GzipBytes(t, want[half:])...)
		if _, ok, err := inflateAll(multi, int64(len(want)-half)); ok || err != nil {
			t.Errorf("%s: two members: ok %v, err %v", name, ok, err)
		}
		plain, err := Decode(want, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s plain: %v", name, err)
		}
		for what, data := range map[string][]byte{"gzip": src, "two members": multi, "recompressed": GzipBytes(t, want)} {
			imgs, err := Decode(data, pixels.DefaultLimits)
			if err != nil {
				t.Errorf("%s %s: %v", name, what, err)
			} else if !reflect.DeepEqual(imgs, plain) {
				t.Errorf("%s %s: slices differ from the plain file's", name, what)
			}
		}
	}
	// Volumes over maxWhole stream, to the same slices.
	defer func(v int64) { maxWhole = v }(maxWhole)
	maxWhole = 1 << 10
	for _, f := range files {
		src, _ := os.ReadFile(f)
		zr, _ := gzip.NewReader(bytes.NewReader(src))
		want, _ := io.ReadAll(zr)
		plain, err1 := Decode(want, pixels.DefaultLimits)
		imgs, err2 := Decode(src, pixels.DefaultLimits)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(imgs, plain) {
			t.Errorf("%s over maxWhole: %v, %v, or slices differ from the plain file's", filepath.Base(f), err1, err2)
		}
	}
	// And they hold one slice, not the whole volume: example4d (1.2 MB of
	// voxels) allocates at least half its volume less when it streams.
	if haveLibdeflate {
		src, err := os.ReadFile(filepath.Join(dir, "example4d.nii.gz"))
		if err != nil {
			t.Fatal(err)
		}
		alloc := func(limit int64) uint64 {
			maxWhole = limit
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			if _, err := Decode(src, pixels.DefaultLimits); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&m1)
			return m1.TotalAlloc - m0.TotalAlloc
		}
		whole, stream := alloc(256<<20), alloc(1<<10)
		if whole < stream+1180064/2 {
			t.Errorf("example4d: %d bytes allocated in one call, %d streaming: streaming should hold one slice, not the volume", whole, stream)
		}
	}
	// A corrupted deflate body is an error from either path.
	src := GzipBytes(t, bytes.Repeat([]byte("multiad "), 4096))
	bad := bytes.Clone(src)
	bad[len(bad)/2] ^= 0xff
	if _, _, err := inflateAll(bad, 4096*8); haveLibdeflate && err == nil {
		t.Error("corrupt body: no error")
	}
}
