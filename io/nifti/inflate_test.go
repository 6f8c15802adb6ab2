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
	defer func(v int64) { maxWhole = v }(maxWhole)
	def := maxWhole
	var volume4d int // example4d's inflated bytes
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
		if name == "example4d.nii.gz" {
			volume4d = len(want)
		}
		got, err := inflateAll(src, int64(len(want)))
		if err != nil || (got != nil) != haveLibdeflate {
			t.Fatalf("%s: inflated %v, err %v; want inflated %v", name, got != nil, err, haveLibdeflate)
		}
		if got != nil && !bytes.Equal(got, want) {
			t.Errorf("%s: libdeflate's bytes differ from compress/gzip's", name)
		}
		if got, err := inflateAll(src, int64(len(want))+1); got != nil || err != nil {
			t.Errorf("%s: needing one byte more than the data: inflated %v, err %v", name, got != nil, err)
		}
		// Two gzip members: the trailer gives only the second's length, so
		// one call cannot do it; Decode streams both and gives the slices of
		// the plain file.
		half := len(want) / 2
		multi := append(GzipBytes(t, want[:half]), GzipBytes(t, want[half:])...)
		if got, err := inflateAll(multi, int64(len(want)-half)); got != nil || err != nil {
			t.Errorf("%s: two members: inflated %v, err %v", name, got != nil, err)
		}
		plain, err := Decode(want, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s plain: %v", name, err)
		}
		// A volume over maxWhole streams, to the same slices.
		for _, c := range []struct {
			what     string
			data     []byte
			maxWhole int64
		}{{"gzip", src, def}, {"two members", multi, def}, {"recompressed", GzipBytes(t, want), def}, {"over maxWhole", src, 1 << 10}} {
			maxWhole = c.maxWhole
			imgs, err := Decode(c.data, pixels.DefaultLimits)
			if err != nil {
				t.Errorf("%s %s: %v", name, c.what, err)
			} else if !reflect.DeepEqual(imgs, plain) {
				t.Errorf("%s %s: slices differ from the plain file's", name, c.what)
			}
		}
	}
	// And a streamed volume holds one slice, not the whole volume: example4d
	// allocates at least half its volume less when it streams.
	if haveLibdeflate {
		if volume4d == 0 {
			t.Fatalf("no example4d.nii.gz in %s", dir)
		}
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
		whole, stream := alloc(def), alloc(1<<10)
		if whole < stream+uint64(volume4d)/2 {
			t.Errorf("example4d: %d bytes allocated in one call, %d streaming: streaming should hold one slice, not the volume", whole, stream)
		}
	}
	// A corrupted deflate body is an error from either path.
	src := GzipBytes(t, bytes.Repeat([]byte("multiad "), 4096))
	bad := bytes.Clone(src)
	bad[len(bad)/2] ^= 0xff
	if _, err := inflateAll(bad, 4096*8); haveLibdeflate && err == nil {
		t.Error("corrupt body: no error")
	}
}
