package dicom

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/jpeg"

	"github.com/multiad/multiad/io/codec/jpegll"
	"github.com/multiad/multiad/io/codec/rle"
	"github.com/multiad/multiad/io/pixels"
)

// frameDecoder decodes one compressed frame into little-endian stored values
// of in.dtype, channels interleaved, exactly in.frameLen() elements.
type frameDecoder func(in *info, frame []byte, lim pixels.Limits) ([]byte, error)

// codecs maps transfer syntaxes to their frame decoders. The JPEG-LS and
// JPEG 2000 entries are added by codecs_cgo.go when built with cgo.
var codecs = map[string]frameDecoder{
	tsRLE:                    decodeRLE,
	"1.2.840.10008.1.2.4.50": decodeJPEGBaseline,
	"1.2.840.10008.1.2.4.51": decodeJPEGBaseline,
	"1.2.840.10008.1.2.4.55": decodeJPEGBaseline, // progressive (retired), via image/jpeg
	"1.2.840.10008.1.2.4.57": decodeJPEGLossless,
	"1.2.840.10008.1.2.4.70": decodeJPEGLossless,
	"1.2.840.10008.1.2.8.1":  decodeDeflatedFrame,
}

// decodeDeflatedFrame decodes a frame of Deflated Image Frame Compression:
// the frame's native little-endian pixel data, deflated (RFC 1951).
func decodeDeflatedFrame(in *info, frame []byte, _ pixels.Limits) ([]byte, error) {
	one := *in
	one.frames = 1
	size := int64(in.frameLen()) * int64(in.bitsAlloc) / 8
	if in.bitsAlloc == 1 {
		size = (int64(in.frameLen()) + 7) / 8
	}
	raw, err := inflate(frame, size+1)
	if err != nil {
		return nil, err
	}
	frames, err := nativeFrames(&one, &dataset{order: binary.LittleEndian}, &element{value: raw})
	if err != nil {
		return nil, err
	}
	return frames[0], nil
}

// encapsulatedFrames splits encapsulated pixel data into frames and decodes
// each with the transfer syntax's codec.
func encapsulatedFrames(in *info, items [][]byte, lim pixels.Limits) ([][]byte, error) {
	dec := codecs[in.ts]
	if dec == nil {
		if isNative(in.ts) {
			return nil, fmt.Errorf("dicom: encapsulated pixel data in native transfer syntax %s", in.ts)
		}
		return nil, unsupported(in.ts, "")
	}
	raw, err := splitFrames(items, in.frames)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(raw))
	for i, f := range raw {
		b, err := dec(in, f, lim)
		if err != nil {
			return nil, fmt.Errorf("%w (frame %d)", err, i)
		}
		if want := in.frameLen() * in.dtype.Size(); len(b) != want {
			return nil, fmt.Errorf("dicom: frame %d decoded to %d bytes, want %d", i, len(b), want)
		}
		out[i] = b
	}
	return out, nil
}

// splitFrames groups the fragments of encapsulated pixel data into n frames
// using the Basic Offset Table when it is present and consistent, else one
// fragment per frame, else by the codec start markers of the fragments.
func splitFrames(items [][]byte, n int) ([][]byte, error) {
	if len(items) < 2 {
		return nil, fmt.Errorf("dicom: encapsulated pixel data has no fragments")
	}
	bot, frags := items[0], items[1:]
	if n == 1 {
		return [][]byte{bytes.Join(frags, nil)}, nil
	}
	if groups := botGroups(bot, frags, n); groups != nil {
		return joinGroups(frags, groups), nil
	}
	if len(frags) == n {
		return frags, nil
	}
	var starts []int
	for i, f := range frags {
		if isFrameStart(f) {
			starts = append(starts, i)
		}
	}
	if len(starts) >= n && starts[0] == 0 {
		groups := make([][2]int, n)
		for k := range groups {
			end := len(frags)
			if k+1 < len(starts) {
				end = starts[k+1]
			}
			groups[k] = [2]int{starts[k], end}
		}
		return joinGroups(frags, groups), nil
	}
	return nil, fmt.Errorf("dicom: cannot split %d fragments into %d frames (no usable offset table)", len(frags), n)
}

// botGroups maps the Basic Offset Table to fragment ranges [start, end), or
// returns nil when the table is absent or does not match the fragments.
func botGroups(bot []byte, frags [][]byte, n int) [][2]int {
	if len(bot) != 4*n {
		return nil
	}
	// Offset of each fragment's item tag from the first fragment's.
	pos := make(map[uint32]int, len(frags))
	var off uint64
	for i, f := range frags {
		if off > 0xFFFFFFFF {
			return nil
		}
		pos[uint32(off)] = i
		off += 8 + uint64(len(f))
	}
	groups := make([][2]int, n)
	for k := range groups {
		i, ok := pos[binary.LittleEndian.Uint32(bot[4*k:])]
		if !ok || (k > 0 && i <= groups[k-1][0]) {
			return nil
		}
		groups[k][0] = i
		if k > 0 {
			groups[k-1][1] = i
		}
	}
	if groups[0][0] != 0 {
		return nil
	}
	groups[n-1][1] = len(frags)
	return groups
}

func joinGroups(frags [][]byte, groups [][2]int) [][]byte {
	out := make([][]byte, len(groups))
	for k, g := range groups {
		if g[1]-g[0] == 1 {
			out[k] = frags[g[0]]
		} else {
			out[k] = bytes.Join(frags[g[0]:g[1]], nil)
		}
	}
	return out
}

// isFrameStart reports whether a fragment begins a JPEG, JPEG-LS or JPEG
// 2000 codestream.
func isFrameStart(f []byte) bool {
	return len(f) >= 2 && f[0] == 0xFF && (f[1] == 0xD8 || f[1] == 0x4F) ||
		len(f) >= 8 && string(f[4:8]) == "jP  "
}

// decodeRLE decodes an RLE Lossless frame.
func decodeRLE(in *info, frame []byte, _ pixels.Limits) ([]byte, error) {
	if in.bitsAlloc == 1 {
		return nil, unsupported(in.ts, "bit-packed (BitsAllocated 1) RLE data")
	}
	b, err := rle.Decode(frame, in.rows, in.cols, in.spp, in.bitsAlloc)
	if err != nil {
		return nil, fmt.Errorf("dicom: %w", err)
	}
	return b, nil
}

// decodeJPEGLossless decodes a lossless JPEG (process 14) frame.
func decodeJPEGLossless(in *info, frame []byte, lim pixels.Limits) ([]byte, error) {
	if in.bitsAlloc == 1 {
		return nil, unsupported(in.ts, "BitsAllocated 1")
	}
	f, err := jpegll.Decode(frame, maxPixels(lim))
	if err != nil {
		return nil, fmt.Errorf("dicom: %w", err)
	}
	if err := checkGeometry(in, f.Width, f.Height, f.Components, f.Precision); err != nil {
		return nil, err
	}
	// Samples are stored as decoded, without sign extension, as for JPEG-LS.
	return packSamples(in, f.Samples, 0), nil
}

// checkGeometry checks a codec's output against the DICOM header.
func checkGeometry(in *info, w, h, comps, precision int) error {
	if w != in.cols || h != in.rows || comps != in.spp {
		return fmt.Errorf("dicom: codestream is %dx%d with %d components, header says %dx%d with %d samples",
			w, h, comps, in.cols, in.rows, in.spp)
	}
	if precision > in.bitsAlloc {
		return fmt.Errorf("dicom: codestream precision %d exceeds BitsAllocated %d", precision, in.bitsAlloc)
	}
	return nil
}

// maxPixels returns the per-image element limit.
func maxPixels(lim pixels.Limits) int64 {
	if lim.MaxPixels > 0 {
		return lim.MaxPixels
	}
	return pixels.DefaultLimits.MaxPixels
}

// packSamples stores unsigned codec samples as in.dtype (see packInts);
// precision 0 means no sign extension.
func packSamples(in *info, s []uint16, precision int) []byte {
	vals := make([]int64, len(s))
	for i, v := range s {
		vals[i] = int64(v)
	}
	return packInts(in, vals, precision, false)
}

// packInts stores codec values as in.dtype, little endian. Unsigned values
// of a signed file whose codestream precision is below BitsAllocated are
// sign-extended from that precision, as GDCM (and pydicom's correction of
// its output) does; values wider than the stored type wrap as in a C cast.
func packInts(in *info, vals []int64, precision int, codecSigned bool) []byte {
	size := in.dtype.Size()
	out := make([]byte, len(vals)*size)
	extend := in.signed && !codecSigned && precision > 0 && precision < in.bitsAlloc
	for i, x := range vals {
		if extend && x&(1<<(precision-1)) != 0 {
			x -= 1 << precision
		}
		switch size {
		case 1:
			out[i] = byte(x)
		case 2:
			binary.LittleEndian.PutUint16(out[2*i:], uint16(x))
		case 4:
			binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
		}
	}
	return out
}

// decodeJPEGBaseline decodes a lossy JPEG frame: sequential DCT (8 or 12
// bit) with decodeDCT, progressive 8-bit with image/jpeg. Colour follows pydicom with Pillow (libjpeg), which wrote the reference:
// when the file says YBR_FULL or YBR_FULL_422 the YCbCr samples are returned
// unconverted (Photometric stays YBR_FULL); when it says RGB, the samples
// are converted from YCbCr only if the stream carries a complete Adobe APP14
// marker asking for it (transform 1, or a JFIF marker), because pydicom
// tells Pillow not to transform RGB streams without one.
func decodeJPEGBaseline(in *info, frame []byte, lim pixels.Limits) ([]byte, error) {
	prec, w, h, comps, mk, err := sofInfo(frame)
	if err != nil {
		return nil, err
	}
	if err := checkGeometry(in, w, h, comps, prec); err != nil {
		return nil, err
	}
	convert := in.photometric == "RGB" && mk.adobe && (mk.jfif || mk.transform != 0)
	d, err := decodeDCT(frame, maxPixels(lim))
	switch {
	case err == nil:
		return packSamples(in, assemble(d, convert), 0), nil
	case !errors.Is(err, errNotSequential) || prec != 8:
		return nil, err
	}
	// Progressive 8-bit JPEG: image/jpeg.
	img, err := jpeg.Decode(bytes.NewReader(frame))
	if err != nil {
		return nil, fmt.Errorf("dicom: JPEG frame: %w", err)
	}
	if b := img.Bounds(); b.Dx() != in.cols || b.Dy() != in.rows {
		return nil, fmt.Errorf("dicom: JPEG frame is %dx%d, header says %dx%d", b.Dx(), b.Dy(), in.cols, in.rows)
	}
	n := in.rows * in.cols
	samples := make([]uint16, n*in.spp)
	switch m := img.(type) {
	case *image.Gray:
		if in.spp != 1 {
			return nil, fmt.Errorf("dicom: grey JPEG frame for %d samples per pixel", in.spp)
		}
		for y := 0; y < in.rows; y++ {
			for x := 0; x < in.cols; x++ {
				samples[y*in.cols+x] = uint16(m.Pix[y*m.Stride+x])
			}
		}
	case *image.YCbCr:
		if in.spp != 3 {
			return nil, fmt.Errorf("dicom: colour JPEG frame for %d samples per pixel", in.spp)
		}
		cb, cr := upsampleChroma(m, in.cols, in.rows)
		for y := 0; y < in.rows; y++ {
			for x := 0; x < in.cols; x++ {
				i := y*in.cols + x
				r, g, b := m.Y[m.YOffset(x, y)], cb[i], cr[i]
				if convert {
					r, g, b = ycbcrToRGB(r, g, b)
				}
				samples[3*i], samples[3*i+1], samples[3*i+2] = uint16(r), uint16(g), uint16(b)
			}
		}
	case *image.RGBA:
		if in.spp != 3 {
			return nil, fmt.Errorf("dicom: colour JPEG frame for %d samples per pixel", in.spp)
		}
		for y := 0; y < in.rows; y++ {
			for x := 0; x < in.cols; x++ {
				p := m.Pix[y*m.Stride+4*x:]
				o := (y*in.cols + x) * 3
				samples[o], samples[o+1], samples[o+2] = uint16(p[0]), uint16(p[1]), uint16(p[2])
			}
		}
	default:
		return nil, fmt.Errorf("dicom: JPEG frame decoded to unsupported %T", img)
	}
	return packSamples(in, samples, 0), nil
}

// jpegMarkers records the colour markers of a JPEG stream.
type jpegMarkers struct {
	jfif, adobe bool // JFIF APP0; complete Adobe APP14
	transform   byte // Adobe colour transform
}

// sofInfo returns precision, width, height and component count from the
// first start-of-frame marker of a JPEG stream, and its colour markers.
func sofInfo(b []byte) (prec, w, h, comps int, mk jpegMarkers, err error) {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, 0, 0, mk, fmt.Errorf("dicom: JPEG frame does not start with SOI")
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return 0, 0, 0, 0, mk, fmt.Errorf("dicom: JPEG marker expected at offset %d", i)
		}
		m := b[i+1]
		if m == 0xFF {
			i++
			continue
		}
		if m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 {
			i += 2
			continue
		}
		seg := int(binary.BigEndian.Uint16(b[i+2:]))
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			if i+4+6 > len(b) || seg < 8 {
				return 0, 0, 0, 0, mk, fmt.Errorf("dicom: truncated JPEG frame header")
			}
			p := b[i+4:]
			if m != 0xC0 && m != 0xC1 && m != 0xC2 {
				return 0, 0, 0, 0, mk, fmt.Errorf("dicom: JPEG process SOF%d is not a baseline/extended DCT process", m-0xC0)
			}
			return int(p[0]), int(binary.BigEndian.Uint16(p[3:])), int(binary.BigEndian.Uint16(p[1:])), int(p[5]), mk, nil
		}
		if m == 0xDA || m == 0xD9 {
			break
		}
		if seg < 2 || i+2+seg > len(b) {
			return 0, 0, 0, 0, mk, fmt.Errorf("dicom: bad or truncated JPEG marker segment at offset %d", i)
		}
		body := b[i+4 : i+2+seg]
		switch {
		case m == 0xE0 && len(body) >= 5 && string(body[:5]) == "JFIF\x00":
			mk.jfif = true
		case m == 0xEE && len(body) >= 12 && string(body[:5]) == "Adobe":
			mk.adobe, mk.transform = true, body[11]
		}
		i += 2 + seg
	}
	return 0, 0, 0, 0, mk, fmt.Errorf("dicom: JPEG frame has no start-of-frame marker")
}

// ycbcrToRGB converts full-range YCbCr to RGB with libjpeg's fixed-point
// arithmetic (jdcolor.c), which GDCM uses.
func ycbcrToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	const scale = 16
	const half = 1 << (scale - 1)
	fix := func(x float64) int64 { return int64(x*(1<<scale) + 0.5) }
	cbv, crv := int64(cb)-128, int64(cr)-128
	yv := int64(y)
	r := yv + ((fix(1.40200)*crv + half) >> scale)
	g := yv + ((-fix(0.34414)*cbv - fix(0.71414)*crv + half) >> scale)
	b := yv + ((fix(1.77200)*cbv + half) >> scale)
	return clamp8(r), clamp8(g), clamp8(b)
}

func clamp8(v int64) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

// assemble interleaves the decoded components at full resolution (chroma
// upsampled as libjpeg does), converting YCbCr to RGB when convert is set.
func assemble(d *dctDecoder, convert bool) []uint16 {
	nc := len(d.comps)
	out := make([]uint16, d.w*d.h*nc)
	for k := range d.comps {
		cw, ch := d.compSize(k)
		full := upsample(func(x, y int) int { return d.sample(k, x, y) }, cw, ch, d.w, d.h,
			d.hmax/d.comps[k].h, d.vmax/d.comps[k].v)
		for i, v := range full {
			out[i*nc+k] = uint16(v)
		}
	}
	if convert && nc == 3 {
		for i := 0; i < len(out); i += 3 {
			r, g, b := ycbcrToRGB(uint8(out[i]), uint8(out[i+1]), uint8(out[i+2]))
			out[i], out[i+1], out[i+2] = uint16(r), uint16(g), uint16(b)
		}
	}
	return out
}

// upsampleChroma returns full-resolution Cb and Cr planes of an image/jpeg
// result.
func upsampleChroma(m *image.YCbCr, w, h int) (cb, cr []uint8) {
	hs, vs := 1, 1
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		hs = 2
	case image.YCbCrSubsampleRatio420:
		hs, vs = 2, 2
	case image.YCbCrSubsampleRatio440:
		vs = 2
	case image.YCbCrSubsampleRatio411:
		hs = 4
	case image.YCbCrSubsampleRatio410:
		hs, vs = 4, 2
	}
	cw, ch := (w+hs-1)/hs, (h+vs-1)/vs
	plane := func(p []uint8) []uint8 {
		full := upsample(func(x, y int) int { return int(p[y*m.CStride+x]) }, cw, ch, w, h, hs, vs)
		out := make([]uint8, len(full))
		for i, v := range full {
			out[i] = uint8(v)
		}
		return out
	}
	return plane(m.Cb), plane(m.Cr)
}

// upsample expands a cw x ch plane subsampled by (hs, vs) to w x h. The
// 2:1 horizontal and 2:2 ratios use libjpeg's "fancy" triangle filter
// (jdsample.c), as the reference decoder does, when the plane is more than
// two samples wide; other ratios replicate samples, as libjpeg does.
func upsample(get func(x, y int) int, cw, ch, w, h, hs, vs int) []int {
	out := make([]int, w*h)
	fancy := cw > 2 && hs == 2 && (vs == 1 || vs == 2)
	for y := 0; y < h; y++ {
		near, far := y/vs, y/vs
		if vs == 2 {
			far = y/2 - 1
			if y%2 == 1 {
				far = y/2 + 1
			}
			far = max(0, min(far, ch-1))
		}
		if !fancy {
			for x := 0; x < w; x++ {
				out[y*w+x] = get(x/hs, near)
			}
			continue
		}
		if vs == 1 { // h2v1_fancy_upsample
			for i := 0; i < cw; i++ {
				c := get(i, near)
				left, right := c, c
				if i > 0 {
					left = (3*c + get(i-1, near) + 1) >> 2
				}
				if i < cw-1 {
					right = (3*c + get(i+1, near) + 2) >> 2
				}
				if 2*i < w {
					out[y*w+2*i] = left
				}
				if 2*i+1 < w {
					out[y*w+2*i+1] = right
				}
			}
			continue
		}
		// h2v2_fancy_upsample
		sum := func(i int) int { return 3*get(i, near) + get(i, far) }
		for i := 0; i < cw; i++ {
			this := sum(i)
			left, right := (this*4+8)>>4, (this*4+7)>>4
			if i > 0 {
				left = (this*3 + sum(i-1) + 8) >> 4
			}
			if i < cw-1 {
				right = (this*3 + sum(i+1) + 7) >> 4
			}
			if 2*i < w {
				out[y*w+2*i] = left
			}
			if 2*i+1 < w {
				out[y*w+2*i+1] = right
			}
		}
	}
	return out
}
