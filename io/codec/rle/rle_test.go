package rle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/codec/internal/codectest"
)

const rleSyntax = "1.2.840.10008.1.2.5"

// decodeFile decodes every frame of an RLE DICOM file and concatenates them.
func decodeFile(t testing.TB, f *codectest.File) []byte {
	t.Helper()
	frames, err := f.Frames()
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for i, fr := range frames {
		out, err := Decode(fr, f.Rows, f.Cols, f.SamplesPerPixel, f.BitsAllocated)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		all = append(all, out...)
	}
	return all
}

// TestDecodeGolden compares the decode of every RLE file in the pydicom test
// set with the sha256 of pydicom+GDCM's pixel_array.
func TestDecodeGolden(t *testing.T) {
	dir := shared.MustPath(t, "data", "decoders", "dicom")
	golden, err := codectest.LoadGolden(dir)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for name, g := range golden {
		if g.TransferSyntax != rleSyntax {
			continue
		}
		t.Run(name, func(t *testing.T) {
			f, err := codectest.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if g.Decodable == nil || !*g.Decodable {
				// The reference refused it (1-bit RLE): we must refuse too, not guess.
				frames, err := f.Frames()
				if err != nil {
					return
				}
				if _, err := Decode(frames[0], f.Rows, f.Cols, f.SamplesPerPixel, f.BitsAllocated); err == nil {
					t.Fatalf("decoded a file the reference could not decode (bits allocated %d)", f.BitsAllocated)
				}
				return
			}
			got := decodeFile(t, f)
			sum := sha256.Sum256(got)
			if h := hex.EncodeToString(sum[:]); h != g.RawSHA256 {
				t.Fatalf("sha256 %s, reference %s (%d bytes, %dx%d spp %d bits %d frames %d)",
					h, g.RawSHA256, len(got), f.Rows, f.Cols, f.SamplesPerPixel, f.BitsAllocated, f.NumberOfFrames)
			}
			checked++
		})
	}
	if checked < 10 {
		t.Errorf("only %d RLE golden files matched, want at least 10", checked)
	}
}

// TestDecodeLGGAgainstDcmtk decodes the RLE slices of the lgg_dicom series
// and compares them with dcmtk's dcmdrle decompression.
func TestDecodeLGGAgainstDcmtk(t *testing.T) {
	files := codectest.LGGFiles(t, "rle")
	tmp := t.TempDir()
	for _, path := range files {
		f, err := codectest.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if f.TransferSyntax != rleSyntax {
			t.Fatalf("%s: transfer syntax %s", path, f.TransferSyntax)
		}
		got := decodeFile(t, f)
		ref, ok, err := codectest.Decompress("dcmdrle", path, tmp)
		if !ok {
			testenv.Missing(t, "dcmdrle not found (Debian package dcmtk)")
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, ref.Native) {
			t.Fatalf("%s: decode differs from dcmdrle (%d vs %d bytes)", path, len(got), len(ref.Native))
		}
	}
}

// TestDecodeLGGAgainstPydicom compares the decoded lgg_dicom RLE slices with
// pydicom's own (numpy) RLE decoder.
func TestDecodeLGGAgainstPydicom(t *testing.T) {
	files := codectest.LGGFiles(t, "rle")
	sums, ok, err := codectest.PydicomSHA256(files)
	if !ok {
		testenv.Missing(t, "python3 with pydicom and numpy not found (Debian: python3-pydicom python3-numpy)")
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, path := range files {
		f, err := codectest.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := sha256.Sum256(decodeFile(t, f))
		if h := hex.EncodeToString(got[:]); h != sums[i] {
			t.Fatalf("%s: sha256 %s, pydicom %s", path, h, sums[i])
		}
	}
}

// randomFrame returns native samples with runs and noise, which exercise
// both literal and replicate runs.
func randomFrame(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; {
		run := 1 + r.IntN(200)
		v := byte(r.Uint32())
		noisy := r.IntN(2) == 0
		for j := 0; j < run && i < n; j++ {
			if noisy {
				v = byte(r.Uint32())
			}
			b[i] = v
			i++
		}
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{8, 16, 32} {
		for _, spp := range []int{1, 3} {
			for _, size := range [][2]int{{1, 1}, {7, 5}, {64, 129}, {3, 300}} {
				rows, cols := size[0], size[1]
				native := randomFrame(r, rows*cols*spp*bits/8)
				enc, err := Encode(native, rows, cols, spp, bits)
				if err != nil {
					t.Fatal(err)
				}
				dec, err := Decode(enc, rows, cols, spp, bits)
				if err != nil {
					t.Fatalf("%d bits, %d spp, %dx%d: %v", bits, spp, rows, cols, err)
				}
				if !bytes.Equal(dec, native) {
					t.Fatalf("%d bits, %d spp, %dx%d: round trip differs", bits, spp, rows, cols)
				}
			}
		}
	}
}

// TestEncodeLayout checks that Encode follows Annex G: first offset 64,
// segments at even offsets, PackBits runs.
func TestEncodeLayout(t *testing.T) {
	native := []byte{1, 2, 3, 3, 3, 3, 4, 5, 6} // 3x1 pixels of 3 samples, 8 bits
	enc, err := Encode(native, 1, 3, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	if n := enc[0]; n != 3 {
		t.Fatalf("segments %d, want 3", n)
	}
	if off := int(enc[4]) | int(enc[5])<<8; off != 64 {
		t.Fatalf("first offset %d, want 64", off)
	}
	for i := 0; i < 3; i++ {
		off := int(enc[4+4*i]) | int(enc[5+4*i])<<8
		if off%2 != 0 {
			t.Fatalf("segment %d at odd offset %d", i, off)
		}
	}
	// Plane 0 holds samples 0 of each pixel: 1, 3, 4 as one literal run.
	if !bytes.Equal(enc[64:68], []byte{2, 1, 3, 4}) {
		t.Fatalf("segment 0 = % x, want 02 01 03 04", enc[64:68])
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(bytes.Repeat([]byte{7, 9}, 100), 10, 10, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	patch := func(at int, b ...byte) []byte {
		c := bytes.Clone(good)
		copy(c[at:], b)
		return c
	}
	tests := []struct {
		name                 string
		frame                []byte
		rows, cols, spp, bit int
		want                 string
	}{
		{"short header", good[:63], 10, 10, 1, 16, "shorter than the 64-byte header"},
		{"segment count", patch(0, 3), 10, 10, 1, 16, "header has 3 segments"},
		{"offset beyond end", patch(4, 0xff, 0xff, 0, 0), 10, 10, 1, 16, "outside the frame"},
		{"offset in header", patch(4, 8), 10, 10, 1, 16, "outside the frame"},
		{"decreasing offsets", patch(4, 90), 10, 10, 1, 16, "precedes"},
		{"too many pixels", good, 1000, 1000, 1, 16, "too few for"},
		{"bits", good, 10, 10, 1, 12, "bits allocated 12"},
		{"one bit", good, 10, 10, 1, 1, "bits allocated 1"},
		{"zero rows", good, 0, 10, 1, 16, "invalid frame size"},
		{"segments over 15", good, 10, 10, 4, 32, "at most 15"},
		{"literal overrun", oneSegment(100, 1), 1, 1, 1, 8, "overruns the segment"},
		{"replicate without value", oneSegment(0xff), 1, 1, 1, 8, "lacks its value"},
		{"short segment", oneSegment(0xff, 1, 0x80), 1, 3, 1, 8, "truncated after 2 of 3 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.frame, tc.rows, tc.cols, tc.spp, tc.bit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// oneSegment returns a one-segment frame holding seg.
func oneSegment(seg ...byte) []byte {
	fr := make([]byte, 64, 64+len(seg))
	fr[0], fr[4] = 1, 64
	return append(fr, seg...)
}

// TestTruncated checks that every proper prefix of a valid frame is an
// error, except dropping the final padding byte, which leaves a valid frame.
func TestTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	native := randomFrame(r, 12*11*3*2)
	enc, err := Encode(native, 12, 11, 3, 16)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(enc); n++ {
		out, err := Decode(enc[:n], 12, 11, 3, 16)
		if err == nil && (n < len(enc)-1 || enc[n] != 0x80 || !bytes.Equal(out, native)) {
			t.Fatalf("prefix of %d/%d bytes decoded without error", n, len(enc))
		}
	}
}

// FuzzDecode checks that Decode never panics, returns exactly the frame size
// on success, and that Encode's output of a decoded frame decodes to it.
func FuzzDecode(f *testing.F) {
	f.Add(mustEncode(f, []byte{1, 2, 2, 2, 2, 3}, 2, 3, 1, 8), uint16(2), uint16(3), uint8(1), uint8(8))
	// Real frames from the shared pydicom test files (read at test time,
	// never copied into the repository).
	dir := shared.MustPath(f, "data", "decoders", "dicom")
	for _, name := range []string{"MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit.dcm", "rtdose_rle_1frame.dcm"} {
		df, err := codectest.ReadFile(filepath.Join(dir, name))
		if err != nil {
			f.Fatal(err)
		}
		frames, err := df.Frames()
		if err != nil || len(frames) == 0 {
			f.Fatalf("%s: %v", name, err)
		}
		f.Add(frames[0], uint16(df.Rows), uint16(df.Cols), uint8(df.SamplesPerPixel), uint8(df.BitsAllocated))
	}
	f.Fuzz(func(t *testing.T, frame []byte, rows, cols uint16, spp, bits uint8) {
		out, err := Decode(frame, int(rows), int(cols), int(spp), int(bits))
		if err != nil {
			return
		}
		if want := int(rows) * int(cols) * int(spp) * int(bits) / 8; len(out) != want {
			t.Fatalf("decoded %d bytes, want %d", len(out), want)
		}
		enc, err := Encode(out, int(rows), int(cols), int(spp), int(bits))
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(enc, int(rows), int(cols), int(spp), int(bits))
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("re-encoded frame does not decode back: %v", err)
		}
	})
}

func mustEncode(tb testing.TB, native []byte, rows, cols, spp, bits int) []byte {
	enc, err := Encode(native, rows, cols, spp, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return enc
}

// BenchmarkDecode decodes one 16-bit lgg_dicom RLE slice.
func BenchmarkDecode(b *testing.B) {
	f, err := codectest.ReadFile(codectest.LGGFiles(b, "rle")[0])
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
		if _, err := Decode(frames[0], f.Rows, f.Cols, f.SamplesPerPixel, f.BitsAllocated); err != nil {
			b.Fatal(err)
		}
	}
}
