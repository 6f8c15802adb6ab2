package nifti_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/nifti"
	"github.com/multiad/multiad/io/pixels"
)

// golden is one entry of shared/data/decoders/nifti/golden.json (nibabel 5.0.0).
type golden struct {
	Affine   [][]float64 `json:"affine"`
	Datatype string      `json:"datatype"`
	Version  int         `json:"nifti_version"`
	Pixdim   []float64   `json:"pixdim"`
	SHA      string      `json:"raw_sha256_fortran_order"`
	Readable bool        `json:"readable"`
	Scaled   struct {
		Max, Mean, Min, Sum jsonFloat
	} `json:"scaled"`
	SclInter *float64 `json:"scl_inter"`
	SclSlope *float64 `json:"scl_slope"`
	Shape    []int64  `json:"shape"`
}

// jsonFloat accepts the bare NaN that Python's json module writes.
type jsonFloat float64

func loadGoldens(t *testing.T) (string, map[string]golden) {
	t.Helper()
	dir := shared.MustPath(t, "data", "decoders", "nifti")
	b, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Python writes NaN, which encoding/json rejects: quote it.
	b = bytes.ReplaceAll(b, []byte(": NaN"), []byte(`: "NaN"`))
	raw := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	out := map[string]golden{}
	for name, m := range raw {
		var g golden
		if err := json.Unmarshal(m, &g); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = g
	}
	return dir, out
}

func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if string(b) == `"NaN"` {
		*f = jsonFloat(math.NaN())
		return nil
	}
	var v float64
	err := json.Unmarshal(b, &v)
	*f = jsonFloat(v)
	return err
}

func readShared(t *testing.T, elems ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(shared.MustPath(t, elems...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fortranBytes reassembles the slices into the volume's bytes in file
// (Fortran) order, little-endian: the inverse of the documented layout.
func fortranBytes(imgs []*pixels.Image) []byte {
	var out []byte
	for _, m := range imgs {
		es := m.Channels * m.DType.Size()
		for c := 0; c < m.Cols; c++ {
			for r := 0; r < m.Rows; r++ {
				out = append(out, m.Data[(r*m.Cols+c)*es:][:es]...)
			}
		}
	}
	return out
}

func closeTo(a, b, rel float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Abs(a-b) <= rel*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func TestGolden(t *testing.T) {
	dir, goldens := loadGoldens(t)
	if len(goldens) < 8 {
		t.Fatalf("only %d goldens", len(goldens))
	}
	for name, g := range goldens {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			h, err := nifti.ReadHeader(data)
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != g.Version {
				t.Errorf("version %d, want %d", h.Version, g.Version)
			}
			if big := strings.HasPrefix(g.Datatype, ">"); big != (h.ByteOrder == binary.BigEndian) {
				t.Errorf("byte order %v, golden dtype %s", h.ByteOrder, g.Datatype)
			}
			if got := h.Shape(); !equalInts(got, g.Shape) {
				t.Errorf("shape %v, want %v", got, g.Shape)
			}
			for i, p := range g.Pixdim {
				if !closeTo(h.Pixdim[i+1], p, 1e-6) {
					t.Errorf("pixdim[%d] = %v, want %v", i+1, h.Pixdim[i+1], p)
				}
			}
			if g.SclSlope != nil && !closeTo(h.SclSlope, *g.SclSlope, 1e-6) {
				t.Errorf("scl_slope %v, want %v", h.SclSlope, *g.SclSlope)
			}
			if g.SclInter != nil && !closeTo(h.SclInter, *g.SclInter, 1e-6) {
				t.Errorf("scl_inter %v, want %v", h.SclInter, *g.SclInter)
			}
			a := h.Affine()
			for i := range g.Affine {
				for j := range g.Affine[i] {
					if !closeTo(a[i][j], g.Affine[i][j], 1e-6) {
						t.Errorf("affine[%d][%d] = %v, want %v", i, j, a[i][j], g.Affine[i][j])
					}
				}
			}

			imgs, err := nifti.Decode(data, pixels.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			slices := int64(1)
			for _, d := range g.Shape[2:] {
				slices *= d
			}
			if int64(len(imgs)) != slices {
				t.Fatalf("%d slices, want %d", len(imgs), slices)
			}
			var all []float64
			for k, m := range imgs {
				if err := m.Validate(); err != nil {
					t.Fatal(err)
				}
				if int64(m.Rows) != g.Shape[0] || (len(g.Shape) > 1 && int64(m.Cols) != g.Shape[1]) {
					t.Fatalf("slice %d is %dx%d, shape %v", k, m.Rows, m.Cols, g.Shape)
				}
				if m.Index != k || m.IndexKind != "slice" || m.Meta.Format != "nifti" || m.Meta.Frames != len(imgs) {
					t.Fatalf("slice %d: index %d %q, meta %+v", k, m.Index, m.IndexKind, m.Meta)
				}
				all = append(all, m.Rescaled()...)
			}
			if m := imgs[0]; !closeTo(m.Meta.Spacing[0], g.Pixdim[0], 1e-6) || !closeTo(m.Meta.Spacing[1], g.Pixdim[1], 1e-6) ||
				!closeTo(m.Meta.SliceSpacing, g.Pixdim[2], 1e-6) {
				t.Errorf("spacing %v / %v, pixdim %v", m.Meta.Spacing, m.Meta.SliceSpacing, g.Pixdim)
			}
			// Meta.Orientation: DICOM convention (LPS), direction of increasing
			// column (j, affine column 1) then of increasing row (i, column 0).
			if h.SformCode > 0 || h.QformCode > 0 {
				o := imgs[0].Meta.Orientation
				for n, col := range []int{1, 0} {
					v := [3]float64{-g.Affine[0][col], -g.Affine[1][col], g.Affine[2][col]}
					norm := math.Sqrt(v[0]*v[0] + v[1]*v[1] + v[2]*v[2])
					for d := 0; d < 3; d++ {
						if !closeTo(o[3*n+d], v[d]/norm, 1e-6) {
							t.Errorf("orientation %v, affine %v", o, g.Affine)
						}
					}
				}
			}
			sum := sha256.Sum256(fortranBytes(imgs))
			if got := hex.EncodeToString(sum[:]); got != g.SHA {
				t.Errorf("raw sha256 %s, want %s", got, g.SHA)
			}
			// The golden stats come from NumPy's min/max/mean, which give NaN
			// when any value is NaN; otherwise they equal the NaN-aware stats.
			st := pixels.StatsOf(all)
			if math.IsNaN(float64(g.Scaled.Min)) {
				if st.Count == len(all) {
					t.Errorf("golden stats are NaN but no value is NaN")
				}
				return
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"min", st.Min, float64(g.Scaled.Min)}, {"max", st.Max, float64(g.Scaled.Max)},
				{"mean", st.Mean, float64(g.Scaled.Mean)}, {"sum", st.Sum, float64(g.Scaled.Sum)}} {
				if !closeTo(c.got, c.want, 1e-9) {
					t.Errorf("scaled %s = %v, want %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLGGShapes checks every lgg_flair volume: 256x256xN uint8, and for the
// test patients N equals the number of slices that test.csv lists.
func TestLGGShapes(t *testing.T) {
	dir := shared.MustPath(t, "data", "medical", "lgg_flair")
	perPatient := map[string]int{}
	f, err := os.Open(filepath.Join(dir, "test.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[1:] {
		perPatient[r[0]]++
	}
	vols, _ := filepath.Glob(filepath.Join(dir, "volumes", "*.nii.gz"))
	if len(vols) < 30 {
		t.Fatalf("found %d volumes", len(vols))
	}
	if testing.Short() {
		vols = vols[:3]
	}
	for _, p := range vols {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := nifti.Decode(data, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		m := imgs[0]
		if m.Rows != 256 || m.Cols != 256 || m.Channels != 1 || m.DType != pixels.Uint8 || len(imgs) < 20 || len(imgs) > 80 {
			t.Errorf("%s: %d slices of %dx%dx%d %v", filepath.Base(p), len(imgs), m.Rows, m.Cols, m.Channels, m.DType)
		}
		if n, ok := perPatient["volumes/"+filepath.Base(p)]; ok && n != len(imgs) {
			t.Errorf("%s: %d slices, test.csv lists %d", filepath.Base(p), len(imgs), n)
		}
	}
}

// TestOrientationMatchesDICOM checks the documented orientation against
// pydicom: slice k of the lgg_flair volume equals the explicit-VR DICOM slice
// with mask_slice k, divided by 16, pixel for pixel.
func TestOrientationMatchesDICOM(t *testing.T) {
	py := testenv.Python(t, "pydicom", "numpy")
	root := shared.MustPath(t, "data", "medical")
	const patient = "TCGA_FG_6691_20020405"
	imgs, err := nifti.Decode(readShared(t, "data", "medical", "lgg_flair", "volumes", patient+"_flair.nii.gz"), pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	ks := []int{0, 20, 47}
	args := []string{"-c", `import sys, hashlib, pydicom, numpy as np
for f in sys.argv[1:]:
    a = pydicom.dcmread(f).pixel_array
    assert (a % 16 == 0).all()
    print(hashlib.sha256((a // 16).astype(np.uint8).tobytes()).hexdigest())`}
	for _, k := range ks {
		args = append(args, filepath.Join(root, "lgg_dicom", "series", patient, "IM"+leftPad(k)+".dcm"))
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pydicom: %v: %s", err, out)
	}
	want := strings.Fields(string(out))
	if len(want) != len(ks) {
		t.Fatalf("pydicom printed %q", out)
	}
	for n, k := range ks {
		sum := sha256.Sum256(imgs[k].Data)
		if got := hex.EncodeToString(sum[:]); got != want[n] {
			t.Errorf("slice %d: sha256 %s, DICOM/16 %s", k, got, want[n])
		}
	}
}

func leftPad(k int) string {
	s := strconv.Itoa(k)
	return strings.Repeat("0", 4-len(s)) + s
}

// header1 builds a little-endian NIfTI-1 single-file header.
func header1(dims []int16, datatype int16, slope, inter float32) []byte {
	b := make([]byte, 352)
	le := binary.LittleEndian
	le.PutUint32(b, 348)
	le.PutUint16(b[40:], uint16(len(dims)))
	for i, d := range dims {
		le.PutUint16(b[42+2*i:], uint16(d))
	}
	le.PutUint16(b[70:], uint16(datatype))
	for i := 0; i < 8; i++ {
		le.PutUint32(b[76+4*i:], math.Float32bits(1))
	}
	le.PutUint32(b[108:], math.Float32bits(352))
	le.PutUint32(b[112:], math.Float32bits(slope))
	le.PutUint32(b[116:], math.Float32bits(inter))
	copy(b[344:], "n+1\x00")
	return b
}

// swapHeader1 converts a header1 to big-endian.
func swapHeader1(b []byte) []byte {
	o := append([]byte(nil), b...)
	rev := func(off, n int) {
		for i := 0; i < n/2; i++ {
			o[off+i], o[off+n-1-i] = o[off+n-1-i], o[off+i]
		}
	}
	rev(0, 4)
	for i := 0; i < 8; i++ {
		rev(40+2*i, 2)
		rev(76+4*i, 4)
	}
	rev(70, 2)
	rev(72, 2)
	for _, off := range []int{108, 112, 116} {
		rev(off, 4)
	}
	return o
}

func TestDatatypes(t *testing.T) {
	// A 2x3x2 volume; voxel (i, j, k) holds v = i + 2j + 6k + 1 (negated for
	// the signed types), written in Fortran order.
	type tc struct {
		name  string
		code  int16
		size  int
		put   func(b []byte, v int, o binary.ByteOrder)
		dtype pixels.DType
		want  func(v int) float64
	}
	cases := []tc{
		{"uint8", nifti.DTUint8, 1, func(b []byte, v int, _ binary.ByteOrder) { b[0] = byte(v) }, pixels.Uint8, func(v int) float64 { return float64(v) }},
		{"int8", nifti.DTInt8, 1, func(b []byte, v int, _ binary.ByteOrder) { b[0] = byte(-v) }, pixels.Int8, func(v int) float64 { return float64(-v) }},
		{"int16", nifti.DTInt16, 2, func(b []byte, v int, o binary.ByteOrder) { o.PutUint16(b, uint16(-1000*v)) }, pixels.Int16, func(v int) float64 { return float64(-1000 * v) }},
		{"uint16", nifti.DTUint16, 2, func(b []byte, v int, o binary.ByteOrder) { o.PutUint16(b, uint16(5000*v)) }, pixels.Uint16, func(v int) float64 { return float64(5000 * v) }},
		{"int32", nifti.DTInt32, 4, func(b []byte, v int, o binary.ByteOrder) { o.PutUint32(b, uint32(int32(-100000*v))) }, pixels.Int32, func(v int) float64 { return float64(-100000 * v) }},
		{"uint32", nifti.DTUint32, 4, func(b []byte, v int, o binary.ByteOrder) { o.PutUint32(b, uint32(300000000*v)) }, pixels.Uint32, func(v int) float64 { return float64(uint32(300000000 * v)) }},
		{"float32", nifti.DTFloat32, 4, func(b []byte, v int, o binary.ByteOrder) { o.PutUint32(b, math.Float32bits(float32(v)/4)) }, pixels.Float32, func(v int) float64 { return float64(v) / 4 }},
		{"float64", nifti.DTFloat64, 8, func(b []byte, v int, o binary.ByteOrder) { o.PutUint64(b, math.Float64bits(float64(v)/3)) }, pixels.Float64, func(v int) float64 { return float64(v) / 3 }},
		{"int64", nifti.DTInt64, 8, func(b []byte, v int, o binary.ByteOrder) { o.PutUint64(b, uint64(int64(-v)<<40)) }, pixels.Float64, func(v int) float64 { return float64(int64(-v) << 40) }},
		{"uint64", nifti.DTUint64, 8, func(b []byte, v int, o binary.ByteOrder) { o.PutUint64(b, uint64(v)<<50) }, pixels.Float64, func(v int) float64 { return float64(uint64(v) << 50) }},
	}
	for _, c := range cases {
		for _, big := range []bool{false, true} {
			name := c.name
			var o binary.ByteOrder = binary.LittleEndian
			if big {
				name += "/big"
				o = binary.BigEndian
			}
			t.Run(name, func(t *testing.T) {
				h := header1([]int16{2, 3, 2}, c.code, 2, -1)
				if big {
					h = swapHeader1(h)
				}
				data := make([]byte, 12*c.size)
				for n := 0; n < 12; n++ {
					c.put(data[n*c.size:], n+1, o)
				}
				imgs, err := nifti.Decode(append(h, data...), pixels.DefaultLimits)
				if err != nil {
					t.Fatal(err)
				}
				if len(imgs) != 2 {
					t.Fatalf("%d slices", len(imgs))
				}
				for k, m := range imgs {
					if m.Rows != 2 || m.Cols != 3 || m.DType != c.dtype || m.Slope != 2 || m.Intercept != -1 {
						t.Fatalf("slice %d: %dx%d %v slope %v inter %v", k, m.Rows, m.Cols, m.DType, m.Slope, m.Intercept)
					}
					for i := 0; i < 2; i++ {
						for j := 0; j < 3; j++ {
							if got, want := m.At(i*3+j), c.want(i+2*j+6*k+1); got != want {
								t.Errorf("slice %d (%d,%d) = %v, want %v", k, i, j, got, want)
							}
						}
					}
				}
			})
		}
	}
}

func TestRGBAndScaling(t *testing.T) {
	data := append(header1([]int16{2, 1, 1}, nifti.DTRGB24, 3, 1), 1, 2, 3, 4, 5, 6)
	imgs, err := nifti.Decode(data, pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	m := imgs[0]
	if m.Channels != 3 || !bytes.Equal(m.Data, []byte{1, 2, 3, 4, 5, 6}) || m.Slope != 1 || m.Intercept != 0 {
		t.Fatalf("RGB24: %+v", m)
	}
	data = append(header1([]int16{2, 1, 1}, nifti.DTRGBA32, 0, 0), 1, 2, 3, 9, 4, 5, 6, 9)
	if imgs, err = nifti.Decode(data, pixels.DefaultLimits); err != nil || !bytes.Equal(imgs[0].Data, []byte{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("RGBA32: %v %v", err, imgs)
	}
	// nibabel: slope 0 or NaN means no scaling, whatever the intercept.
	for _, s := range []float32{0, float32(math.NaN())} {
		imgs, err := nifti.Decode(append(header1([]int16{1, 1}, nifti.DTUint8, s, 7), 5), pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if m := imgs[0]; m.Slope != 1 || m.Intercept != 0 || m.Rescaled()[0] != 5 {
			t.Errorf("slope %v: got slope %v inter %v", s, m.Slope, m.Intercept)
		}
	}
}

func TestPair(t *testing.T) {
	h := header1([]int16{2, 2, 1}, nifti.DTUint8, 0, 0)
	copy(h[344:], "ni1\x00")
	binary.LittleEndian.PutUint32(h[108:], math.Float32bits(0))
	img := []byte{1, 2, 3, 4}
	if _, err := nifti.Decode(append(h[:348:348], img...), pixels.DefaultLimits); err == nil || !strings.Contains(err.Error(), "DecodePair") {
		t.Errorf("Decode of a .hdr: %v", err)
	}
	for _, gz := range []bool{false, true} {
		im := img
		if gz {
			im = nifti.GzipBytes(t, img)
		}
		imgs, err := nifti.DecodePair(h[:348], im, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		// Fortran order: (0,0)=1 (1,0)=2 (0,1)=3 (1,1)=4; rows are i.
		if !bytes.Equal(imgs[0].Data, []byte{1, 3, 2, 4}) {
			t.Errorf("gzip %v: data %v", gz, imgs[0].Data)
		}
	}
}

func TestBadInput(t *testing.T) {
	std := readShared(t, "data", "decoders", "nifti", "anatomical.nii")
	neg := header1([]int16{2, -3, 2}, nifti.DTUint8, 0, 0)
	zero := header1([]int16{3, 0, 2}, nifti.DTUint8, 0, 0)
	badDim0 := header1([]int16{2, 3, 2}, nifti.DTUint8, 0, 0)
	binary.LittleEndian.PutUint16(badDim0[40:], 9)
	complex64 := header1([]int16{2, 3, 2}, 32, 0, 0)
	cases := map[string][]byte{
		"empty":          nil,
		"short":          std[:100],
		"header only":    std[:348],
		"truncated data": std[:len(std)-1],
		"negative dim":   neg,
		"zero dim":       zero,
		"bad dim0":       badDim0,
		"complex":        complex64,
		"not nifti":      []byte("hello, this is not a NIfTI file at all, just some text padding it out ......"),
		"truncated gzip": nifti.GzipBytes(t, std)[:2000],
	}
	for name, data := range cases {
		if _, err := nifti.Decode(data, pixels.DefaultLimits); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "nifti: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
}

// TestGzipTrailer: a .nii.gz whose gzip CRC-32 or length does not match
// its data fails (the voxels inflate fine, so only the trailer can tell),
// and the intact file decodes.
func TestGzipTrailer(t *testing.T) {
	gz := nifti.GzipBytes(t, readShared(t, "data", "decoders", "nifti", "anatomical.nii"))
	if _, err := nifti.Decode(gz, pixels.DefaultLimits); err != nil {
		t.Fatalf("intact: %v", err)
	}
	for name, at := range map[string]int{"crc": len(gz) - 8, "length": len(gz) - 4} {
		bad := bytes.Clone(gz)
		bad[at] ^= 0x5a
		if _, err := nifti.Decode(bad, pixels.DefaultLimits); err == nil || !strings.HasPrefix(err.Error(), "nifti: ") {
			t.Errorf("%s corrupted: %v, want a nifti error", name, err)
		}
	}
}

// TestBombs: a header claiming 2^40 voxels fails before allocating, and a
// tiny gzip that would inflate hugely fails fast.
func TestBombs(t *testing.T) {
	huge := header1([]int16{16384, 16384, 4096}, nifti.DTUint8, 0, 0)
	for _, data := range [][]byte{huge, nifti.GzipBytes(t, huge)} {
		var m0, m1 testingMem
		m0.read()
		_, err := nifti.Decode(data, pixels.DefaultLimits)
		m1.read()
		if err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("2^40 voxels: %v", err)
		}
		if m1.alloc-m0.alloc > 1<<20 {
			t.Errorf("allocated %d bytes before failing", m1.alloc-m0.alloc)
		}
	}
	// Within the default limits (2^28 voxels of int16 = 512 MiB), but the
	// 1 MiB of zeros that follow compress to ~1 KiB: rejected before
	// inflating or allocating, as no deflate stream expands that much.
	h := header1([]int16{16384, 16384, 1}, nifti.DTInt16, 0, 0)
	bomb := nifti.GzipBytes(t, append(h, make([]byte, 1<<20)...))
	var m0, m1 testingMem
	m0.read()
	_, err := nifti.Decode(bomb, pixels.DefaultLimits)
	m1.read()
	if err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("gzip bomb: %v", err)
	}
	if m1.alloc-m0.alloc > 1<<20 {
		t.Errorf("gzip bomb: allocated %d bytes before failing", m1.alloc-m0.alloc)
	}
	// A small header followed by 16 MiB of zeros: only the needed bytes are
	// inflated.
	small := header1([]int16{4, 4, 2}, nifti.DTUint8, 0, 0)
	long := nifti.GzipBytes(t, append(small, make([]byte, 16<<20)...))
	m0.read()
	imgs, err := nifti.Decode(long, pixels.DefaultLimits)
	m1.read()
	if err != nil || len(imgs) != 2 {
		t.Fatalf("trailing data: %v", err)
	}
	if m1.alloc-m0.alloc > 4<<20 {
		t.Errorf("trailing data: allocated %d bytes", m1.alloc-m0.alloc)
	}
	// Limits from the caller apply too.
	if _, err := nifti.Decode(append(small, make([]byte, 32)...), pixels.Limits{MaxPixels: 8}); err == nil {
		t.Error("MaxPixels 8 accepted 4x4 slices")
	}
}

func FuzzDecode(f *testing.F) {
	dir, err := shared.Path("data", "decoders", "nifti")
	if err == nil {
		for _, name := range []string{"standard.nii.gz", "row_major.dconn.nii"} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				f.Add(b)
			}
		}
		for _, name := range []string{"anatomical.nii", "functional.nii", "reoriented_anat_moved.nii"} {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				f.Add(b[:600]) // header + truncated data
			}
		}
		if b, err := os.ReadFile(filepath.Join(dir, "example_nifti2.nii.gz")); err == nil {
			f.Add(b[:400])
		}
	}
	f.Add(append(header1([]int16{2, 2, 2}, nifti.DTRGB24, 1, 0), make([]byte, 12)...))
	f.Add(append(swapHeader1(header1([]int16{2, 2, 1}, nifti.DTFloat32, 1, 0)), make([]byte, 16)...))
	// A small, valid .nii.gz: mutations of its body reach libdeflate's
	// one-call path (the trailer's length matches).
	f.Add(nifti.GzipBytes(f, append(header1([]int16{4, 3, 2}, nifti.DTInt16, 1, 0), bytes.Repeat([]byte{1, 2, 3}, 16)...)))
	lim := pixels.Limits{MaxPixels: 1 << 16, MaxVoxels: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = nifti.ReadHeader(data)
		_, _ = nifti.DecodePair(data, data, lim)
		imgs, err := nifti.Decode(data, lim)
		if err != nil {
			return
		}
		for _, m := range imgs {
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// testingMem samples the bytes allocated so far.
type testingMem struct{ alloc uint64 }

func (m *testingMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.alloc = s.TotalAlloc
}
