package jpegll

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/codec/internal/codectest"
)

const testLimit = 1 << 26

var losslessSyntaxes = map[string]bool{"1.2.840.10008.1.2.4.57": true, "1.2.840.10008.1.2.4.70": true}

// nativeBytes lays the samples out as a native DICOM frame: one byte per
// sample for 8 bits allocated, two little-endian bytes for 16.
func nativeBytes(t testing.TB, f *Frame, bitsAllocated int) []byte {
	t.Helper()
	switch bitsAllocated {
	case 8:
		out := make([]byte, len(f.Samples))
		for i, s := range f.Samples {
			out[i] = byte(s)
		}
		return out
	case 16:
		out := make([]byte, 2*len(f.Samples))
		for i, s := range f.Samples {
			binary.LittleEndian.PutUint16(out[2*i:], s)
		}
		return out
	}
	t.Fatalf("unsupported bits allocated %d", bitsAllocated)
	return nil
}

// decodeFile decodes every frame of a JPEG lossless DICOM file into native
// frame bytes, concatenated.
func decodeFile(t testing.TB, f *codectest.File) []byte {
	t.Helper()
	frames, err := f.Frames()
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for i, data := range frames {
		fr, err := Decode(data, testLimit)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if fr.Width != f.Cols || fr.Height != f.Rows || fr.Components != f.SamplesPerPixel {
			t.Fatalf("frame %d: JPEG is %dx%dx%d, DICOM header %dx%dx%d", i, fr.Width, fr.Height, fr.Components, f.Cols, f.Rows, f.SamplesPerPixel)
		}
		all = append(all, nativeBytes(t, fr, f.BitsAllocated)...)
	}
	return all
}

// TestDecodeGolden compares the decode of every JPEG lossless file in the
// pydicom test set with the sha256 of pydicom+GDCM's pixel_array.
func TestDecodeGolden(t *testing.T) {
	dir := shared.MustPath(t, "data", "decoders", "dicom")
	golden, err := codectest.LoadGolden(dir)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, g := range golden {
		if !losslessSyntaxes[g.TransferSyntax] || g.Decodable == nil || !*g.Decodable {
			continue
		}
		t.Run(name, func(t *testing.T) {
			f, err := codectest.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			got := decodeFile(t, f)
			sum := sha256.Sum256(got)
			if h := hex.EncodeToString(sum[:]); h != g.RawSHA256 {
				t.Fatalf("sha256 %s, reference %s", h, g.RawSHA256)
			}
			checked++
		})
	}
	if checked < 4 {
		t.Errorf("only %d JPEG lossless golden files matched, want 4", checked)
	}
}

// TestDecodeLGGAgainstDcmtk decodes the JPEG lossless SV1 slices of the
// lgg_dicom series and compares them with dcmtk's dcmdjpeg.
func TestDecodeLGGAgainstDcmtk(t *testing.T) {
	files := codectest.LGGFiles(t, "jpeg_lossless")
	tmp := t.TempDir()
	for _, path := range files {
		f, err := codectest.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !losslessSyntaxes[f.TransferSyntax] {
			t.Fatalf("%s: transfer syntax %s", path, f.TransferSyntax)
		}
		got := decodeFile(t, f)
		ref, ok, err := codectest.Decompress("dcmdjpeg", path, tmp)
		if !ok {
			testenv.Missing(t, "dcmdjpeg not found (Debian package dcmtk)")
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(ref.Native) == 0 || !bytes.Equal(got, ref.Native) {
			t.Fatalf("%s: decode differs from dcmdjpeg (%d vs %d bytes)", path, len(got), len(ref.Native))
		}
	}
}

// TestDcmtkPredictors compresses uncompressed files with dcmcjpeg using each
// selection value 1-7 and point transforms 0 and 2, and compares our decode
// with dcmdjpeg's decode of the same file (and, for point transform 0, with
// the original pixels).
func TestDcmtkPredictors(t *testing.T) {
	if _, err := exec.LookPath("dcmcjpeg"); err != nil {
		testenv.Missing(t, "dcmcjpeg not found (Debian package dcmtk)")
	}
	explicit := codectest.LGGFiles(t, "explicit")[3]
	dir := shared.MustPath(t, "data", "decoders", "dicom")
	sources := []string{
		explicit, // 16-bit allocated, 12 stored, MR
		filepath.Join(dir, "pydicom_data", "SC_rgb.dcm"),       // 8-bit RGB
		filepath.Join(dir, "pydicom_data", "SC_rgb_16bit.dcm"), // 16-bit RGB
		filepath.Join(dir, "MR_small.dcm"),                     // 16-bit signed
	}
	tmp := t.TempDir()
	for _, src := range sources {
		orig, err := codectest.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		for sv := 1; sv <= 7; sv++ {
			for _, pt := range []int{0, 2} {
				name := fmt.Sprintf("%s/sv%d_pt%d", filepath.Base(src), sv, pt)
				t.Run(name, func(t *testing.T) {
					dst := filepath.Join(tmp, fmt.Sprintf("%s_sv%d_pt%d.dcm", filepath.Base(src), sv, pt))
					cmd := exec.Command("dcmcjpeg", "+el", "+sv", fmt.Sprint(sv), "+pt", fmt.Sprint(pt), src, dst)
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("dcmcjpeg: %v: %s", err, out)
					}
					f, err := codectest.ReadFile(dst)
					if err != nil {
						t.Fatal(err)
					}
					// The stream must use the requested predictor and point transform.
					frames, err := f.Frames()
					if err != nil {
						t.Fatal(err)
					}
					if sos := bytes.Index(frames[0], []byte{0xFF, 0xDA}); sos < 0 || sos+10+2*int(frames[0][sos+4]) > len(frames[0]) {
						t.Fatal("no SOS in dcmcjpeg output")
					} else if ns := int(frames[0][sos+4]); int(frames[0][sos+5+2*ns]) != sv || int(frames[0][sos+7+2*ns]&15) != pt {
						t.Fatalf("dcmcjpeg wrote Ss=%d Al=%d", frames[0][sos+5+2*ns], frames[0][sos+7+2*ns]&15)
					}
					got := decodeFile(t, f)
					ref, _, err := codectest.Decompress("dcmdjpeg", dst, tmp)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, ref.Native) {
						t.Fatalf("decode differs from dcmdjpeg (%d vs %d bytes)", len(got), len(ref.Native))
					}
					if pt == 0 && !bytes.Equal(got, orig.Native[:len(got)]) {
						t.Fatalf("lossless decode differs from the original pixels")
					}
				})
			}
		}
	}
}

// testImage returns an image with smooth regions, noise, half-range and
// full-range jumps (so that 16-bit images produce the difference 32768).
func testImage(r *rand.Rand, w, h, nc, precision int) []uint16 {
	s := make([]uint16, w*h*nc)
	maxv := 1<<precision - 1
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < nc; c++ {
				var v int
				switch (x / 5) % 4 {
				case 0:
					v = (x*7 + y*3 + c*11) % (maxv + 1)
				case 1:
					v = r.IntN(maxv + 1)
				case 2: // half-range checkerboard: differences of 2^(P-1)
					v = (x + y) % 2 << (precision - 1)
				default:
					if (x+y)%2 == 0 {
						v = maxv
					}
				}
				s[(y*w+x)*nc+c] = uint16(v)
			}
		}
	}
	return s
}

// TestEncoderStreams decodes streams with restart intervals, interleaved and
// non-interleaved scans, every predictor, precisions 2-16 and point transforms.
func TestEncoderStreams(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, precision := range []int{2, 8, 12, 16} {
		for _, nc := range []int{1, 3, 4} {
			for sv := 1; sv <= 7; sv++ {
				for _, restart := range []int{0, 1, 3} {
					for _, interleaved := range []bool{true, false} {
						pt := (sv + restart) % 2
						w, h := 17, 11
						p := encParams{w: w, h: h, nc: nc, precision: precision, sv: sv, pt: pt, restart: restart * w, interleaved: interleaved}
						img := testImage(r, w, h, nc, precision)
						data := encodeTest(img, p)
						f, err := Decode(data, testLimit)
						if err != nil {
							t.Fatalf("%+v: %v", p, err)
						}
						for i, s := range img {
							if want := s >> pt << pt; f.Samples[i] != want {
								t.Fatalf("%+v: sample %d = %d, want %d", p, i, f.Samples[i], want)
							}
						}
						if f.Width != w || f.Height != h || f.Components != nc || f.Precision != precision {
							t.Fatalf("%+v: got frame %dx%dx%d P%d", p, f.Width, f.Height, f.Components, f.Precision)
						}
					}
				}
			}
		}
	}
}

// TestDifference32768 checks the 16-bit special case: category 16 carries
// no additional bits and means a difference of 32768 (modulo 2^16).
func TestDifference32768(t *testing.T) {
	img := []uint16{0, 32768, 0, 65535, 32767, 65535}
	data := encodeTest(img, encParams{w: 6, h: 1, nc: 1, precision: 16, sv: 1})
	f, err := Decode(data, testLimit)
	if err != nil {
		t.Fatal(err)
	}
	for i := range img {
		if f.Samples[i] != img[i] {
			t.Fatalf("samples %v, want %v", f.Samples, img)
		}
	}
}

// TestTestEncoderAgainstDcmtk validates the test encoder: dcmdjpeg must
// decode its streams (restart intervals, separate scans per component,
// 16-bit differences of 32768) to the pixels it encoded.
func TestTestEncoderAgainstDcmtk(t *testing.T) {
	if _, err := exec.LookPath("dcmdjpeg"); err != nil {
		testenv.Missing(t, "dcmdjpeg not found (Debian package dcmtk)")
	}
	dir := shared.MustPath(t, "data", "decoders", "dicom")
	tests := []struct {
		src       string
		precision int
		p         encParams
	}{
		{codectest.LGGFiles(t, "explicit")[0], 12, encParams{sv: 1, restart: 5, interleaved: true}},
		{codectest.LGGFiles(t, "explicit")[0], 12, encParams{sv: 6, restart: 1, interleaved: true}},
		{filepath.Join(dir, "pydicom_data", "SC_rgb_16bit.dcm"), 16, encParams{sv: 7, restart: 3, interleaved: false}},
		{filepath.Join(dir, "pydicom_data", "SC_rgb_16bit.dcm"), 16, encParams{sv: 4, interleaved: true}},
	}
	r := rand.New(rand.NewPCG(7, 8))
	tmp := t.TempDir()
	for i, tc := range tests {
		orig, err := codectest.ReadFile(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		p := tc.p
		p.w, p.h, p.nc, p.precision = orig.Cols, orig.Rows, orig.SamplesPerPixel, tc.precision
		p.restart *= p.w
		img := testImage(r, p.w, p.h, p.nc, p.precision)
		native := make([]byte, 2*len(img))
		for i, s := range img {
			binary.LittleEndian.PutUint16(native[2*i:], s)
		}
		path := filepath.Join(tmp, fmt.Sprintf("enc%d.dcm", i))
		if err := os.WriteFile(path, encapsulate(t, raw, orig, encodeTest(img, p)), 0o644); err != nil {
			t.Fatal(err)
		}
		ref, _, err := codectest.Decompress("dcmdjpeg", path, tmp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ref.Native, native) {
			t.Fatalf("%+v: dcmdjpeg decodes the test encoder's stream differently", p)
		}
	}
}

// encapsulate rewrites an Explicit VR LE file (raw, parsed as f) into a JPEG
// lossless (.70) file holding stream as its only fragment.
func encapsulate(t *testing.T, raw []byte, f *codectest.File, stream []byte) []byte {
	t.Helper()
	i := bytes.Index(raw, []byte("1.2.840.10008.1.2.1\x00"))
	pix := max(bytes.LastIndex(raw, []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'W'}),
		bytes.LastIndex(raw, []byte{0xE0, 0x7F, 0x10, 0x00, 'O', 'B'}))
	if i < 0 || pix < 0 || len(f.Native) == 0 {
		t.Fatal("cannot locate the transfer syntax or pixel data")
	}
	// The syntax UID grows from 20 to 22 bytes: fix its element length and
	// the meta group length.
	out := append(bytes.Clone(raw[:i]), "1.2.840.10008.1.2.4.70"...)
	out = append(out, raw[i+20:pix]...)
	binary.LittleEndian.PutUint16(out[i-2:], 22)
	g := bytes.Index(out, []byte{0x02, 0x00, 0x00, 0x00, 'U', 'L', 4, 0})
	if g < 0 {
		t.Fatal("no group length")
	}
	binary.LittleEndian.PutUint32(out[g+8:], binary.LittleEndian.Uint32(out[g+8:])+2)
	if len(stream)%2 == 1 {
		stream = append(stream, 0)
	}
	out = append(out, 0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF)
	out = append(out, 0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0)
	out = binary.LittleEndian.AppendUint32(append(out, 0xFE, 0xFF, 0x00, 0xE0), uint32(len(stream)))
	out = append(out, stream...)
	return append(out, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0)
}

// TestTruncated checks that every proper prefix of a valid stream (restart
// markers, three scans) is an error.
func TestTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	img := testImage(r, 7, 6, 3, 16)
	data := encodeTest(img, encParams{w: 7, h: 6, nc: 3, precision: 16, sv: 4, restart: 14})
	for n := 0; n < len(data); n++ {
		if _, err := Decode(data[:n], testLimit); err == nil {
			t.Fatalf("prefix of %d/%d bytes decoded without error", n, len(data))
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	good := encodeTest(testImage(r, 8, 4, 1, 12), encParams{w: 8, h: 4, nc: 1, precision: 12, sv: 1})
	sof := bytes.Index(good, []byte{0xFF, 0xC3})
	sos := bytes.Index(good, []byte{0xFF, 0xDA})
	dht := bytes.Index(good, []byte{0xFF, 0xC4})
	patch := func(at int, b ...byte) []byte {
		c := bytes.Clone(good)
		copy(c[at:], b)
		return c
	}
	tests := []struct {
		name  string
		data  []byte
		limit int64
		want  string
	}{
		{"empty", nil, testLimit, "missing SOI"},
		{"limit", good, 31, "exceeds the limit of 31"},
		{"baseline", patch(sof+1, 0xC0), testLimit, "unsupported frame type SOF0"},
		{"precision", patch(sof+4, 1), testLimit, "invalid precision 1"},
		{"height 0", patch(sof+5, 0, 0), testLimit, "frame height 0"},
		{"components", patch(sof+9, 5), testLimit, "component count 5"},
		{"sampling", patch(sof+11, 0x21), testLimit, "sampling factors 2x1"},
		{"predictor", patch(sos+7, 0), testLimit, "selection value 0"},
		{"point transform", patch(sos+9, 12), testLimit, "point transform 12"},
		{"table", patch(sos+6, 0x10), testLimit, "undefined Huffman table 1"},
		{"scan component", patch(sos+5, 9), testLimit, "component id 9 is not in the frame"},
		{"huffman overflow", patch(dht+5, 2, 0), testLimit, "overflow"},
		{"bad length", patch(sof+2, 0, 1), testLimit, "invalid length 1"},
		{"no EOI", good[:len(good)-2], testLimit, "truncated stream"},
		{"SOS first", append([]byte{0xFF, 0xD8}, good[sos:]...), testLimit, "SOS before the SOF3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data, tc.limit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "jpegll: ") || !strings.Contains(err.Error(), " at byte ") {
				t.Fatalf("error %q does not say where", err)
			}
		})
	}
}

// FuzzDecode checks that Decode never panics and that a decoded frame is
// consistent with its header.
func FuzzDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(13, 14))
	f.Add(encodeTest(testImage(r, 9, 5, 3, 16), encParams{w: 9, h: 5, nc: 3, precision: 16, sv: 7, restart: 18}))
	f.Add(encodeTest(testImage(r, 9, 5, 2, 8), encParams{w: 9, h: 5, nc: 2, precision: 8, sv: 5, pt: 1}))
	// Real streams from the shared test files (read at test time, never
	// copied into the repository).
	dir := shared.MustPath(f, "data", "decoders", "dicom")
	for _, name := range []string{"SC_rgb_jpeg_gdcm.dcm", "pydicom_data/JPGLosslessP14SV1_1s_1f_8b.dcm"} {
		df, err := codectest.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		frames, err := df.Frames()
		if err != nil || len(frames) == 0 {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add(frames[0])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data, 1<<20)
		if err != nil {
			return
		}
		if len(fr.Samples) != fr.Width*fr.Height*fr.Components {
			t.Fatalf("%d samples for %dx%dx%d", len(fr.Samples), fr.Width, fr.Height, fr.Components)
		}
	})
}

// BenchmarkDecode decodes one 16-bit lgg_dicom JPEG lossless SV1 slice.
func BenchmarkDecode(b *testing.B) {
	f, err := codectest.ReadFile(codectest.LGGFiles(b, "jpeg_lossless")[0])
	if err != nil {
		b.Fatal(err)
	}
	frames, err := f.Frames()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(f.Rows * f.Cols * f.SamplesPerPixel * f.BitsAllocated / 8))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(frames[0], testLimit); err != nil {
			b.Fatal(err)
		}
	}
}
