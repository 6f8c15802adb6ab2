package decode_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/nifti"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/raster"
	"github.com/multiad/multiad/io/storage/gcstest"
)

var emu *gcstest.Server

func TestMain(m *testing.M) {
	var err error
	if emu, err = gcstest.Start(); err != nil { // before the first gs:// access
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	emu.Stop()
	os.Exit(code)
}

func read(t *testing.T, elems ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(shared.MustPath(t, elems...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encoded(t *testing.T, enc func(*bytes.Buffer, image.Image) error) []byte {
	m := image.NewGray(image.Rect(0, 0, 3, 2))
	for i := range m.Pix {
		m.Pix[i] = uint8(40 * i)
	}
	var buf bytes.Buffer
	if err := enc(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSniff(t *testing.T) {
	anat := read(t, "data", "decoders", "nifti", "anatomical.nii") // big-endian NIfTI-1
	preamble := append(make([]byte, 128), "DICM\x02\x00\x01\x00OB"...)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"a.nii", anat, decode.NIfTI},
		{"a.nii.gz", gz(t, anat), decode.NIfTI},
		{"nifti2.nii.gz", read(t, "data", "decoders", "nifti", "example_nifti2.nii.gz"), decode.NIfTI},
		{"noext", read(t, "data", "decoders", "nifti", "row_major.dconn.nii"), decode.NIfTI},
		{"x.dcm", preamble, decode.DICOM},
		{"x", read(t, "data", "decoders", "dicom", "ExplVR_LitEndNoMeta.dcm"), decode.DICOM},
		{"x", read(t, "data", "decoders", "dicom", "ExplVR_BigEndNoMeta.dcm"), decode.DICOM},
		{"x", read(t, "data", "decoders", "dicom", "rtstruct.dcm"), decode.DICOM},
		{"x.png", encoded(t, func(b *bytes.Buffer, m image.Image) error { return png.Encode(b, m) }), decode.PNG},
		{"x.dcm", encoded(t, func(b *bytes.Buffer, m image.Image) error { return png.Encode(b, m) }), decode.PNG},
		{"x.jpg", encoded(t, func(b *bytes.Buffer, m image.Image) error { return jpeg.Encode(b, m, nil) }), decode.JPEG},
		{"x.tif", encoded(t, func(b *bytes.Buffer, m image.Image) error { return tiff.Encode(b, m, nil) }), decode.TIFF},
		{"x.bmp", encoded(t, func(b *bytes.Buffer, m image.Image) error { return bmp.Encode(b, m) }), decode.BMP},
		// Group 0010 without preamble: only with the .dcm hint.
		{"x.dcm", []byte("\x10\x00\x10\x00PN\x04\x00Doe^"), decode.DICOM},
		{"x.txt", []byte("\x10\x00\x10\x00PN\x04\x00Doe^"), ""},
		{"x.nii", []byte("not a nifti file at all"), ""},
		{"x.gz", gz(t, []byte("plain text inside gzip")), ""},
		{"empty", nil, ""},
	}
	for _, c := range cases {
		if got := decode.Sniff(c.name, c.data); got != c.want {
			t.Errorf("Sniff(%s, % x...) = %q, want %q", c.name, c.data[:min(len(c.data), 8)], got, c.want)
		}
	}
}

// TestSniffShared: every file of the reference sets that pydicom or nibabel
// could read is recognised.
func TestSniffShared(t *testing.T) {
	for _, set := range []struct{ dir, want string }{{"dicom", decode.DICOM}, {"nifti", decode.NIfTI}} {
		dir := shared.MustPath(t, "data", "decoders", set.dir)
		b, err := os.ReadFile(filepath.Join(dir, "golden.json"))
		if err != nil {
			t.Fatal(err)
		}
		var golden map[string]struct {
			Readable *bool `json:"readable"`
		}
		if err := json.Unmarshal(bytes.ReplaceAll(b, []byte("NaN"), []byte("0")), &golden); err != nil {
			t.Fatal(err)
		}
		n := 0
		for name, g := range golden {
			if g.Readable == nil || !*g.Readable {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			n++
			if got := decode.Sniff(name, data); got != set.want {
				t.Errorf("%s/%s: Sniff = %q", set.dir, name, got)
			}
		}
		if n < 8 {
			t.Errorf("%s: only %d readable files", set.dir, n)
		}
	}
}

func TestBytesDispatch(t *testing.T) {
	jpg := read(t, "data", "industrial", "magnetic_tile", "test", "good", firstJPEG(t))
	nii := read(t, "data", "decoders", "nifti", "standard.nii.gz")
	dcm := read(t, "data", "medical", "lgg_dicom", "series", "TCGA_FG_6691_20020405", "IM0010.dcm")
	for _, c := range []struct {
		name   string
		data   []byte
		direct func([]byte, pixels.Limits) ([]*pixels.Image, error)
	}{{"tile.jpg", jpg, raster.Decode}, {"standard.nii.gz", nii, nifti.Decode}, {"IM0010.dcm", dcm, dicom.Decode}} {
		got, err := decode.Bytes(c.name, c.data, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		want, err := c.direct(c.data, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		sameImages(t, c.name, got, want)
	}
	for name, c := range map[string]struct {
		data []byte
		msg  string
	}{
		"empty.png": {nil, "decode: empty.png: empty file"},
		"x.bin":     {[]byte("\x00\x01\x02 garbage"), "decode: x.bin: unsupported format (first bytes 00 01 02"},
		"bad.png":   {[]byte("\x89PNG\r\n\x1a\nxx"), "decode: bad.png: raster: "},
		"bad.nii":   {nii[:100], "decode: bad.nii: nifti: "},
	} {
		_, err := decode.Bytes(name, c.data, pixels.DefaultLimits)
		if err == nil || !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want prefix %q", name, err, c.msg)
		}
	}
}

func firstJPEG(t *testing.T) string {
	names, _ := filepath.Glob(filepath.Join(shared.MustPath(t, "data", "industrial", "magnetic_tile", "test", "good"), "*.jpg"))
	if len(names) == 0 {
		t.Fatal("no JPEGs")
	}
	return filepath.Base(names[0])
}

func sameImages(t *testing.T, name string, got, want []*pixels.Image) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d images, want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Rows != w.Rows || g.Cols != w.Cols || g.Channels != w.Channels || g.DType != w.DType ||
			!bytes.Equal(g.Data, w.Data) || g.Slope != w.Slope || g.Intercept != w.Intercept || g.Index != w.Index {
			t.Fatalf("%s: image %d differs", name, i)
		}
	}
}

// splitPair turns a single-file NIfTI-1 into a .hdr/.img pair.
func splitPair(t *testing.T, nii []byte) (hdr, img []byte) {
	h, err := nifti.ReadHeader(nii)
	if err != nil {
		t.Fatal(err)
	}
	hdr = append([]byte(nil), nii[:348]...)
	copy(hdr[344:], "ni1\x00")
	binary.BigEndian.PutUint32(hdr[108:], math.Float32bits(0)) // anatomical.nii is big-endian
	return hdr, nii[h.VoxOffset:]
}

func TestURI(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	anat := read(t, "data", "decoders", "nifti", "anatomical.nii")
	hdr, img := splitPair(t, anat)
	for name, b := range map[string][]byte{"anat.hdr": hdr, "anat.img": img, "gzpair.hdr": hdr, "gzpair.img.gz": gz(t, img)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	emu.Put("bkt", "pair/anat.hdr", hdr)
	emu.Put("bkt", "pair/anat.img", img)
	want, err := nifti.Decode(anat, pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{filepath.Join(dir, "anat.hdr"), filepath.Join(dir, "anat.img"), "file://" + dir + "/gzpair.hdr",
		filepath.Join(dir, "gzpair.img.gz"), "gs://bkt/pair/anat.hdr", "gs://bkt/pair/anat.img"} {
		got, err := decode.URI(ctx, uri, pixels.DefaultLimits)
		if err != nil {
			t.Errorf("%s: %v", uri, err)
			continue
		}
		sameImages(t, uri, got, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "lonely.hdr"), hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := decode.URI(ctx, filepath.Join(dir, "lonely.hdr"), pixels.DefaultLimits); err == nil || !strings.Contains(err.Error(), "no .img") {
		t.Errorf("hdr without img: %v", err)
	}
	if _, err := decode.URI(ctx, filepath.Join(dir, "missing.png"), pixels.DefaultLimits); err == nil {
		t.Error("missing file decoded")
	}
	// A file over MaxBytes is refused before reading.
	lim := pixels.Limits{MaxPixels: 4, MaxVoxels: 4}
	big := filepath.Join(dir, "big.nii")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, decode.MaxBytes(lim)+1); err != nil { // sparse: nothing is written
		t.Fatal(err)
	}
	if _, err := decode.URI(ctx, big, lim); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("oversized file: %v", err)
	}
}

// TestGCSMatchesLocal: decode.URI over gs:// gives the same pixels as the
// local file, for a DICOM, a .nii.gz and a JPEG.
func TestGCSMatchesLocal(t *testing.T) {
	ctx := context.Background()
	files := []string{
		shared.MustPath(t, "data", "medical", "lgg_dicom", "series", "TCGA_FG_6691_20020405", "IM0005.dcm"),
		shared.MustPath(t, "data", "medical", "lgg_flair", "volumes", "TCGA_FG_6691_20020405_flair.nii.gz"),
		shared.MustPath(t, "data", "industrial", "magnetic_tile", "test", "good", firstJPEG(t)),
	}
	for i, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		uri := fmt.Sprintf("gs://archive/d%d/%s", i, filepath.Base(p))
		emu.Put("archive", strings.TrimPrefix(uri, "gs://archive/"), b)
		remote, err := decode.URI(ctx, uri, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		local, err := decode.URI(ctx, p, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		sameImages(t, uri, remote, local)
	}
}

// TestDICOMMatchesNIfTI checks the NIfTI slice orientation end to end: every
// lgg DICOM slice, in all three transfer syntaxes, equals 16 x the NIfTI
// slice that test.csv pairs it with, pixel (r, c) for pixel (r, c).
func TestDICOMMatchesNIfTI(t *testing.T) {
	ctx := context.Background()
	root := shared.MustPath(t, "data", "medical")
	f, err := os.Open(filepath.Join(root, "lgg_dicom", "test.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	vols := map[string][]*pixels.Image{}
	checked := map[string]int{}
	for _, r := range recs[1:] {
		uri, slice, patient, ts := r[0], r[3], r[4], r[5]
		if vols[patient] == nil {
			v, err := decode.URI(ctx, filepath.Join(root, "lgg_flair", "volumes", patient+"_flair.nii.gz"), pixels.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			vols[patient] = v
		}
		imgs, err := decode.URI(ctx, filepath.Join(root, "lgg_dicom", uri), pixels.DefaultLimits)
		if err != nil {
			t.Errorf("%s (%s): %v", uri, ts, err)
			continue
		}
		var k int
		if _, err := fmt.Sscan(slice, &k); err != nil {
			t.Fatalf("%s: slice %q: %v", uri, slice, err)
		}
		d, n := imgs[0], vols[patient][k]
		if d.Rows != n.Rows || d.Cols != n.Cols || d.Channels != 1 || n.Channels != 1 {
			t.Fatalf("%s: DICOM %dx%d, NIfTI %dx%d", uri, d.Rows, d.Cols, n.Rows, n.Cols)
		}
		for p := 0; p < d.Len(); p++ {
			if d.At(p) != 16*n.At(p) {
				t.Fatalf("%s (%s) pixel (%d,%d): DICOM %v, NIfTI slice %d has %v", uri, ts, p/d.Cols, p%d.Cols, d.At(p), k, n.At(p))
			}
		}
		checked[ts]++
	}
	if len(checked) != 3 {
		t.Errorf("checked %v, want all three transfer syntaxes", checked)
	}
}

func TestSummarize(t *testing.T) {
	m := pixels.New(2, 2, 1, pixels.Float32)
	for i, v := range []float64{1, 2, math.NaN(), 5} {
		m.Set(i, v)
	}
	m.Slope, m.Intercept = 2, 1
	m.Index, m.IndexKind = 3, "slice"
	m.Meta = pixels.Meta{Format: "nifti", Identity: pixels.Identity{PatientName: "Doe^Jane", PatientID: "123"}}
	s := decode.Summarize("a.nii", m, false)
	if *s.Slice != 3 || s.Frame != nil || s.Min != 1 || s.Max != 5 || s.Mean != 8.0/3 ||
		s.RescaledMin != 3 || s.RescaledMax != 11 || s.RescaledMean != 19.0/3 || s.DType != "float32" || s.PHI != nil {
		t.Errorf("summary %+v", s)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"uri", "slice", "rows", "cols", "channels", "dtype", "min", "max", "mean", "rescaled_min", "rescaled_max", "rescaled_mean", "format"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	for _, k := range []string{"frame", "phi", "modality", "transfer_syntax"} {
		if _, ok := got[k]; ok {
			t.Errorf("JSON %s has %q", b, k)
		}
	}
	if strings.Contains(string(b), "Doe") {
		t.Errorf("PHI leaked: %s", b)
	}
	s = decode.Summarize("a.nii", m, true)
	if s.PHI["patient_name"] != "Doe^Jane" || s.PHI["patient_id"] != "123" || len(s.PHI) != 2 {
		t.Errorf("PHI %v", s.PHI)
	}
	// All NaN: statistics are null in JSON.
	for i := 0; i < 4; i++ {
		m.Set(i, math.NaN())
	}
	b, err = json.Marshal(decode.Summarize("a.nii", m, false))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"min":null`) || !strings.Contains(string(b), `"rescaled_mean":null`) {
		t.Errorf("NaN stats: %s", b)
	}
}

// TestSummarizeDICOM: a real DICOM slice carries its modality, transfer
// syntax and (only when asked) the synthetic patient name.
func TestSummarizeDICOM(t *testing.T) {
	imgs, err := decode.URI(context.Background(), shared.MustPath(t, "data", "medical", "lgg_dicom", "series", "TCGA_FG_6691_20020405", "IM0000.dcm"), pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	s := decode.Summarize("IM0000.dcm", imgs[0], true)
	if s.Modality != "MR" || s.TransferSyntax != "1.2.840.10008.1.2.1" || s.Format != "dicom" || s.PHI["patient_name"] == "" {
		t.Errorf("summary %+v", s)
	}
	if s := decode.Summarize("IM0000.dcm", imgs[0], false); s.PHI != nil {
		t.Errorf("PHI without showPHI: %v", s.PHI)
	}
}
