package dicom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/pixels"
)

func readShared(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(shared.MustPath(t, "data", "decoders", "dicom", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeShared(t *testing.T, name string) []*pixels.Image {
	t.Helper()
	imgs, err := Decode(readShared(t, name), pixels.DefaultLimits)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return imgs
}

func shaOf(imgs []*pixels.Image) string {
	h := sha256.New()
	for _, m := range imgs {
		h.Write(m.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Reference sha256 values below were computed with Debian's pydicom 2.3.1
// (numpy; pydicom.pixel_data_handlers.util.apply_color_lut and
// convert_color_space), independently of this package.

func TestPalette(t *testing.T) {
	for _, tc := range []struct{ file, sha string }{
		{"pydicom_data/OBXXXX1A.dcm", "1d7c5b0e13324650464e173f83cbbb1054761cf6427fcb9eb4574df1263eb5c0"},
		// The big-endian copy must give the little-endian file's colours:
		// pydicom 2.3.1 itself mis-reads big-endian palette data (it gives
		// 37 where the little-endian file gives 9472 = 37*256), so its value
		// for OBXXXX1A_expb_2frame.dcm is not used as the reference.
		{"pydicom_data/OBXXXX1A_2frame.dcm", "a6fbd4fb03a9d5e52c5866117856b66644f3b846598fc64e6dfaf3695ff20b54"},
		{"pydicom_data/OBXXXX1A_expb_2frame.dcm", "a6fbd4fb03a9d5e52c5866117856b66644f3b846598fc64e6dfaf3695ff20b54"},
		// Segmented palettes, little and big endian.
		{"pydicom_data/gdcm-US-ALOKA-16.dcm", "080bc76069a7aff6fee77dcc6887788750d662e8cd283ae91cba8558b02fa7c1"},
		{"pydicom_data/gdcm-US-ALOKA-16_big.dcm", "080bc76069a7aff6fee77dcc6887788750d662e8cd283ae91cba8558b02fa7c1"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data := readShared(t, tc.file)
			imgs, err := Decode(data, pixels.DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if p := imgs[0].Meta.Photometric; p != "PALETTE COLOR" {
				t.Fatalf("Photometric %q", p)
			}
			pal, err := ReadPalette(data)
			if err != nil {
				t.Fatal(err)
			}
			var rgb []*pixels.Image
			for _, m := range imgs {
				c, err := pal.Apply(m)
				if err != nil {
					t.Fatal(err)
				}
				rgb = append(rgb, c)
			}
			if got := shaOf(rgb); got != tc.sha {
				t.Fatalf("sha256 %s, pydicom %s", got, tc.sha)
			}
		})
	}
	if _, err := ReadPalette(readShared(t, "CT_small.dcm")); err == nil {
		t.Error("ReadPalette of a greyscale file: want an error")
	}
}

func TestYBRToRGB(t *testing.T) {
	const want = "ddb100d8f45a7fbf420e8ce5d1b376a5479f068c5109daac31eb982f662d228f"
	for _, name := range []string{"pydicom_data/SC_ybr_full_uncompressed.dcm", "SC_ybr_full_422_uncompressed.dcm"} {
		imgs := decodeShared(t, name)
		m := imgs[0]
		if m.Meta.Photometric != "YBR_FULL" {
			t.Errorf("%s: Photometric %q, want YBR_FULL", name, m.Meta.Photometric)
		}
		rgb, err := pixels.YBRToRGB(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := shaOf([]*pixels.Image{rgb}); got != want {
			t.Errorf("%s: sha256 %s, pydicom %s", name, got, want)
		}
	}
}

// TestJPEGAgainstDcmtk compares JPEG baseline decodes pixel by pixel with
// the same images decompressed by dcmtk (dcmdjpeg), which converts YBR to
// RGB with its own rounding.
func TestJPEGAgainstDcmtk(t *testing.T) {
	const tol = 3
	for _, tc := range []struct{ jpeg, native string }{
		{"SC_rgb_dcmtk_+eb+cr.dcm", "pydicom_data/SC_rgb_dcmtk_ebcr_dcmd.dcm"},
		{"SC_rgb_dcmtk_+eb+cy+n1.dcm", "pydicom_data/SC_rgb_dcmtk_ebcyn1_dcmd.dcm"},
		{"SC_rgb_dcmtk_+eb+cy+n2.dcm", "pydicom_data/SC_rgb_dcmtk_ebcyn2_dcmd.dcm"},
		{"SC_rgb_dcmtk_+eb+cy+np.dcm", "pydicom_data/SC_rgb_dcmtk_ebcynp_dcmd.dcm"},
		{"SC_rgb_dcmtk_+eb+cy+s2.dcm", "pydicom_data/SC_rgb_dcmtk_ebcys2_dcmd.dcm"},
		{"SC_rgb_dcmtk_+eb+cy+s4.dcm", "pydicom_data/SC_rgb_dcmtk_ebcys4_dcmd.dcm"},
	} {
		m := decodeShared(t, tc.jpeg)[0]
		if m.Meta.Photometric == "YBR_FULL" {
			var err error
			if m, err = pixels.YBRToRGB(m); err != nil {
				t.Fatal(err)
			}
		}
		ref := decodeShared(t, tc.native)[0]
		if len(m.Data) != len(ref.Data) {
			t.Fatalf("%s: %d bytes, reference %d", tc.jpeg, len(m.Data), len(ref.Data))
		}
		worst := 0
		for i := range m.Data {
			worst = max(worst, absInt(int(m.Data[i])-int(ref.Data[i])))
		}
		if worst > tol {
			t.Errorf("%s: max difference %d from dcmtk's decode (tolerance %d)", tc.jpeg, worst, tol)
		}
	}
}

// TestProgressiveJPEG encodes a progressive JPEG with dcmtk (when it is
// installed) and compares our decode (image/jpeg) with dcmtk's.
func TestProgressiveJPEG(t *testing.T) {
	enc, err1 := exec.LookPath("dcmcjpeg")
	dec, err2 := exec.LookPath("dcmdjpeg")
	if err1 != nil || err2 != nil {
		testenv.Missing(t, "dcmcjpeg or dcmdjpeg not found (Debian package dcmtk)")
	}
	dir := t.TempDir()
	src := shared.MustPath(t, "data", "decoders", "dicom", "pydicom_data", "SC_rgb.dcm")
	prog, back := filepath.Join(dir, "prog.dcm"), filepath.Join(dir, "back.dcm")
	for _, cmd := range [][]string{{enc, "+ep", src, prog}, {dec, prog, back}} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	m := decodeFile(t, prog)[0]
	if m.Meta.TransferSyntax != "1.2.840.10008.1.2.4.55" || m.Meta.Photometric != "YBR_FULL" {
		t.Fatalf("transfer syntax %s, photometric %s", m.Meta.TransferSyntax, m.Meta.Photometric)
	}
	rgb, err := pixels.YBRToRGB(m)
	if err != nil {
		t.Fatal(err)
	}
	ref := decodeFile(t, back)[0]
	worst := 0
	for i := range rgb.Data {
		worst = max(worst, absInt(int(rgb.Data[i])-int(ref.Data[i])))
	}
	if worst > 4 {
		t.Errorf("progressive JPEG differs from dcmtk's decode by %d", worst)
	}
	t.Logf("max difference from dcmtk: %d", worst)
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// TestNotDecodable covers golden entries the reference could not read or
// decode: Decode must give an error, except for the files listed with an
// independent check of what it returns.
func TestNotDecodable(t *testing.T) {
	dir, golden := loadGolden(t)
	decodes := map[string]func(t *testing.T, imgs []*pixels.Image){
		// Only the final sequence delimiter is missing: the frames must equal
		// the complete file's reference decode.
		"pydicom_data/emri_small_jpeg_2k_lossless_too_short.dcm": func(t *testing.T, imgs []*pixels.Image) {
			if codecs["1.2.840.10008.1.2.4.90"] == nil {
				t.Skip("JPEG 2000 not built in")
			}
			if got, want := shaOf(imgs), golden["pydicom_data/emri_small_jpeg_2k_lossless.dcm"].SHA; got != want {
				t.Errorf("sha256 %s, complete file %s", got, want)
			}
		},
		// Deflated Image Frame Compression (pydicom 2.3.1 cannot decode it):
		// the frames must equal the reference decode of the native files.
		"pydicom_data/liver_deflate.dcm":                 sameSHAAs(golden, "pydicom_data/liver.dcm"),
		"pydicom_data/liver_nonbyte_aligned_deflate.dcm": sameSHAAs(golden, "pydicom_data/liver_nonbyte_aligned.dcm"),
		// Float Pixel Data (the reference only looked at Pixel Data); sha256
		// from pydicom 2.3.1's pixel_array.
		"pydicom_data/parametric_map_float.dcm":        wantSHA("ef41ff13cf378171c7ee25198c75e2b70764e3789664f17dd6df40163ec37284", pixels.Float32),
		"pydicom_data/parametric_map_double_float.dcm": wantSHA("10ba9bdb66165a13309c3d9840e6e36d1ec797a58f55e05845013af8ebd680d5", pixels.Float64),
		// Raw datasets without file meta (pydicom refuses them without
		// force): JPEG-LS RGB in three interleave modes must agree.
		"pydicom_data/JLSL_RGB_ILV0.dcm": sameAs(t, dir, "pydicom_data/JLSL_RGB_ILV2.dcm"),
		"pydicom_data/JLSL_RGB_ILV1.dcm": sameAs(t, dir, "pydicom_data/JLSL_RGB_ILV2.dcm"),
		"pydicom_data/JLSL_RGB_ILV2.dcm": sameAs(t, dir, "pydicom_data/JLSL_RGB_ILV0.dcm"),
		"pydicom_data/JLSN_RGB_ILV0.dcm": func(t *testing.T, imgs []*pixels.Image) {
			// Near-lossless: within NEAR of the lossless decode.
			ref := decodeFile(t, filepath.Join(dir, "pydicom_data/JLSL_RGB_ILV0.dcm"))
			worst := 0
			for i := range imgs[0].Data {
				worst = max(worst, absInt(int(imgs[0].Data[i])-int(ref[0].Data[i])))
			}
			if worst > 10 {
				t.Errorf("near-lossless differs by %d from lossless", worst)
			}
		},
		// Implicit VR dataset without file meta; 8-bit palette image.
		"pydicom_data/OT-PAL-8-face.dcm": func(t *testing.T, imgs []*pixels.Image) {
			if len(imgs) != 1 || imgs[0].Meta.Photometric != "PALETTE COLOR" || imgs[0].Rows != 480 || imgs[0].Cols != 640 {
				t.Errorf("got %d images, %+v", len(imgs), imgs[0].Meta)
			}
		},
	}
	for _, name := range sortedKeys(golden) {
		g := golden[name]
		if g.Decodable != nil && *g.Decodable {
			continue
		}
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			imgs, err := Decode(data, pixels.DefaultLimits)
			if check, ok := decodes[name]; ok && !(err != nil && errors.Is(err, ErrUnsupported)) {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				for _, m := range imgs {
					if err := m.Validate(); err != nil {
						t.Fatal(err)
					}
				}
				check(t, imgs)
				return
			}
			if err == nil {
				t.Fatalf("want an error (reference: readable %v, decodable %v, %s), got %d images", deref(g.Readable), deref(g.Decodable), g.Error, len(imgs))
			}
			if !strings.HasPrefix(err.Error(), "dicom: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if g.HasPixels != nil && !*g.HasPixels && !errors.Is(err, ErrNoPixelData) && !errors.Is(err, ErrUnsupported) &&
				!strings.Contains(err.Error(), "claims") {
				t.Errorf("object without pixel data: want ErrNoPixelData or a truncation error, got %v", err)
			}
			t.Logf("%v", err)
		})
	}
}

func sameSHAAs(golden map[string]goldenEntry, other string) func(t *testing.T, imgs []*pixels.Image) {
	return func(t *testing.T, imgs []*pixels.Image) {
		if got, want := shaOf(imgs), golden[other].SHA; got != want {
			t.Errorf("sha256 %s, reference of %s %s", got, other, want)
		}
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func wantSHA(sha string, dt pixels.DType) func(t *testing.T, imgs []*pixels.Image) {
	return func(t *testing.T, imgs []*pixels.Image) {
		if imgs[0].DType != dt {
			t.Errorf("dtype %v, want %v", imgs[0].DType, dt)
		}
		if got := shaOf(imgs); got != sha {
			t.Errorf("sha256 %s, pydicom %s", got, sha)
		}
	}
}

func decodeFile(t *testing.T, path string) []*pixels.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := Decode(b, pixels.DefaultLimits)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return imgs
}

func sameAs(t *testing.T, dir, other string) func(t *testing.T, imgs []*pixels.Image) {
	return func(t *testing.T, imgs []*pixels.Image) {
		ref := decodeFile(t, filepath.Join(dir, other))
		if !bytes.Equal(imgs[0].Data, ref[0].Data) {
			t.Errorf("differs from %s", other)
		}
	}
}

// TestLimits checks that the limits are applied before decoding.
func TestLimits(t *testing.T) {
	data := readShared(t, "pydicom_data/emri_small.dcm") // 10 frames of 64x64
	if _, err := Decode(data, pixels.Limits{MaxPixels: 64*64 - 1}); err == nil {
		t.Error("MaxPixels below one frame: want an error")
	}
	if _, err := Decode(data, pixels.Limits{MaxVoxels: 64 * 64 * 9}); err == nil {
		t.Error("MaxVoxels below ten frames: want an error")
	}
	if imgs, err := Decode(data, pixels.Limits{MaxPixels: 64 * 64, MaxVoxels: 64 * 64 * 10}); err != nil || len(imgs) != 10 {
		t.Errorf("at the limit: %d images, %v", len(imgs), err)
	}
}

// TestTruncated cuts files at many points: every cut must give an error or
// valid images, never a panic.
func TestTruncated(t *testing.T) {
	for _, name := range []string{"CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "image_dfl.dcm",
		"MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "pydicom_data/JPEG-LL.dcm", "rtdose.dcm"} {
		data := readShared(t, name)
		for cut := 0; cut < len(data); cut += 1 + len(data)/97 {
			imgs, err := Decode(data[:cut], pixels.DefaultLimits)
			if err != nil {
				continue
			}
			for _, m := range imgs {
				if err := m.Validate(); err != nil {
					t.Errorf("%s cut at %d: %v", name, cut, err)
				}
			}
		}
	}
}

// TestMeta checks the header fields copied into Meta.
func TestMeta(t *testing.T) {
	m := decodeShared(t, "CT_small.dcm")[0]
	want := pixels.Meta{Format: "dicom", Modality: "CT", TransferSyntax: "1.2.840.10008.1.2.1",
		Photometric: "MONOCHROME2", SourcePhotometric: "MONOCHROME2", Frames: 1}
	got := m.Meta
	if got.Format != want.Format || got.Modality != want.Modality || got.TransferSyntax != want.TransferSyntax ||
		got.Photometric != want.Photometric || got.Frames != 1 {
		t.Errorf("meta %+v", got)
	}
	if m.Slope != 1 || m.Intercept != -1024 || m.IndexKind != "" {
		t.Errorf("slope %v intercept %v index kind %q", m.Slope, m.Intercept, m.IndexKind)
	}
	if got.Spacing[0] <= 0 || got.Orientation == [6]float64{} {
		t.Errorf("spacing %v orientation %v", got.Spacing, got.Orientation)
	}
	multi := decodeShared(t, "pydicom_data/emri_small.dcm")
	for i, f := range multi {
		if f.Index != i || f.IndexKind != "frame" || f.Meta.Frames != 10 {
			t.Fatalf("frame %d: index %d kind %q frames %d", i, f.Index, f.IndexKind, f.Meta.Frames)
		}
	}
	if bs := multi[0].Meta.BitsStored; bs != 12 {
		t.Errorf("BitsStored %d, want 12", bs)
	}
	if codecs["1.2.840.10008.1.2.4.90"] != nil { // the set's MONOCHROME1 files are JPEG 2000
		mono1 := decodeShared(t, "pydicom_data/RG3_J2KR.dcm")[0]
		if mono1.Meta.Photometric != "MONOCHROME1" {
			t.Errorf("MONOCHROME1 recorded as %q", mono1.Meta.Photometric)
		}
	}
}

// TestSplitFrames checks the grouping of encapsulated fragments into frames.
func TestSplitFrames(t *testing.T) {
	jpeg := func(s string) []byte { return append([]byte{0xFF, 0xD8}, s...) }
	cont := func(s string) []byte { return []byte(s) }
	bot := func(offs ...uint32) []byte {
		b := make([]byte, 4*len(offs))
		for i, o := range offs {
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(o), byte(o>>8), byte(o>>16), byte(o>>24)
		}
		return b
	}
	a1, a2, b1 := jpeg("a1"), cont("a2x"), jpeg("b1")
	for _, tc := range []struct {
		name    string
		items   [][]byte
		n       int
		want    []string
		wantErr bool
	}{
		{"one frame joins all", [][]byte{nil, a1, a2}, 1, []string{string(a1) + string(a2)}, false},
		{"one fragment per frame", [][]byte{nil, cont("x"), cont("y")}, 2, []string{"x", "y"}, false},
		// Offsets count each fragment's 8-byte item header.
		{"offset table", [][]byte{bot(0, uint32(8+len(a1)+8+len(a2))), a1, a2, b1}, 2,
			[]string{string(a1) + string(a2), string(b1)}, false},
		{"markers without table", [][]byte{nil, a1, a2, b1}, 2, []string{string(a1) + string(a2), string(b1)}, false},
		{"bad table falls back to markers", [][]byte{bot(0, 5), a1, a2, b1}, 2, []string{string(a1) + string(a2), string(b1)}, false},
		{"too few frames", [][]byte{nil, a1, a2, cont("z")}, 2, nil, true},
		{"no fragments", [][]byte{nil}, 1, nil, true},
	} {
		got, err := splitFrames(tc.items, tc.n)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: error %v, want error %v", tc.name, err, tc.wantErr)
			continue
		}
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if strings.Join(gs, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: frames %q, want %q", tc.name, gs, tc.want)
		}
	}
}
