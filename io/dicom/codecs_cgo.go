//go:build cgo && !multiad_nocgo && !dicom_nocgo

// JPEG-LS (CharLS) and JPEG 2000 (OpenJPEG) decoding through cgo, against
// Debian's libcharls-dev and libopenjp2-7-dev. Build with the tag
// multiad_nocgo (or CGO_ENABLED=0; dicom_nocgo is still accepted) to leave
// them out: those transfer syntaxes then return ErrUnsupported.

package dicom

/*
#cgo LDFLAGS: -lcharls -lopenjp2
#cgo CFLAGS: -I/usr/include/openjpeg-2.5
#include <stdlib.h>
#include <string.h>
#include <charls/charls.h>
#include <openjpeg.h>

// jls_info reads a JPEG-LS header. It returns 0 or a CharLS error code.
static int jls_info(const void* src, size_t n, charls_frame_info* fi, int32_t* ilv) {
	charls_jpegls_decoder* d = charls_jpegls_decoder_create();
	if (!d) return -1;
	int err = charls_jpegls_decoder_set_source_buffer(d, src, n);
	if (!err) err = charls_jpegls_decoder_read_header(d);
	if (!err) err = charls_jpegls_decoder_get_frame_info(d, fi);
	charls_interleave_mode m = CHARLS_INTERLEAVE_MODE_NONE;
	if (!err) err = charls_jpegls_decoder_get_interleave_mode(d, &m);
	*ilv = (int32_t)m;
	charls_jpegls_decoder_destroy(d);
	return err;
}

// jls_decode decodes a JPEG-LS stream into dst (dstn bytes).
static int jls_decode(const void* src, size_t n, void* dst, size_t dstn) {
	charls_jpegls_decoder* d = charls_jpegls_decoder_create();
	if (!d) return -1;
	int err = charls_jpegls_decoder_set_source_buffer(d, src, n);
	if (!err) err = charls_jpegls_decoder_read_header(d);
	size_t need = 0;
	if (!err) err = charls_jpegls_decoder_get_destination_size(d, 0, &need);
	if (!err && need != dstn) err = -2;
	if (!err) err = charls_jpegls_decoder_decode_to_buffer(d, dst, dstn, 0);
	charls_jpegls_decoder_destroy(d);
	return err;
}

typedef struct { const unsigned char* data; size_t size; size_t pos; } memsrc;

static OPJ_SIZE_T mem_read(void* buf, OPJ_SIZE_T n, void* ud) {
	memsrc* m = (memsrc*)ud;
	if (m->pos >= m->size) return (OPJ_SIZE_T)-1;
	size_t k = m->size - m->pos;
	if (k > n) k = n;
	memcpy(buf, m->data + m->pos, k);
	m->pos += k;
	return k;
}

static OPJ_OFF_T mem_skip(OPJ_OFF_T n, void* ud) {
	memsrc* m = (memsrc*)ud;
	if (n < 0) {
		if ((size_t)(-n) > m->pos) n = -(OPJ_OFF_T)m->pos;
	} else if ((size_t)n > m->size - m->pos) {
		n = (OPJ_OFF_T)(m->size - m->pos);
	}
	m->pos += n;
	return n;
}

static OPJ_BOOL mem_seek(OPJ_OFF_T n, void* ud) {
	memsrc* m = (memsrc*)ud;
	if (n < 0 || (size_t)n > m->size) return OPJ_FALSE;
	m->pos = (size_t)n;
	return OPJ_TRUE;
}

typedef struct {
	memsrc src;
	opj_codec_t* codec;
	opj_stream_t* stream;
	opj_image_t* image;
} j2kdec;

static void quiet(const char* msg, void* ud) { (void)msg; (void)ud; }

// j2k_header opens a J2K codestream or JP2 file held in C memory and reads
// its header. It returns 0 on success.
static int j2k_header(j2kdec* d, const unsigned char* data, size_t size) {
	OPJ_CODEC_FORMAT fmt = (size >= 12 && memcmp(data + 4, "jP  ", 4) == 0) ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K;
	d->src.data = data; d->src.size = size; d->src.pos = 0;
	d->codec = opj_create_decompress(fmt);
	if (!d->codec) return 1;
	opj_set_info_handler(d->codec, quiet, NULL);
	opj_set_warning_handler(d->codec, quiet, NULL);
	opj_set_error_handler(d->codec, quiet, NULL);
	opj_dparameters_t p;
	opj_set_default_decoder_parameters(&p);
	if (!opj_setup_decoder(d->codec, &p)) return 2;
	d->stream = opj_stream_create(1 << 16, OPJ_TRUE);
	if (!d->stream) return 3;
	opj_stream_set_user_data(d->stream, &d->src, NULL);
	opj_stream_set_user_data_length(d->stream, size);
	opj_stream_set_read_function(d->stream, mem_read);
	opj_stream_set_skip_function(d->stream, mem_skip);
	opj_stream_set_seek_function(d->stream, mem_seek);
	if (!opj_read_header(d->stream, d->codec, &d->image)) return 4;
	return 0;
}

static int j2k_decode(j2kdec* d) {
	if (!opj_decode(d->codec, d->stream, d->image)) return 5;
	if (!opj_end_decompress(d->codec, d->stream)) return 6;
	return 0;
}

static void j2k_free(j2kdec* d) {
	if (d->image) opj_image_destroy(d->image);
	if (d->stream) opj_stream_destroy(d->stream);
	if (d->codec) opj_destroy_codec(d->codec);
}

static opj_image_comp_t* j2k_comp(j2kdec* d, int i) { return &d->image->comps[i]; }
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/multiad/multiad/io/pixels"
)

func init() {
	codecs["1.2.840.10008.1.2.4.80"] = decodeJPEGLS
	codecs["1.2.840.10008.1.2.4.81"] = decodeJPEGLS
	codecs["1.2.840.10008.1.2.4.90"] = decodeJ2K
	codecs["1.2.840.10008.1.2.4.91"] = decodeJ2K
}

// decodeJPEGLS decodes a JPEG-LS frame with CharLS.
func decodeJPEGLS(in *info, frame []byte, lim pixels.Limits) ([]byte, error) {
	if len(frame) == 0 || in.bitsAlloc == 1 || in.bitsAlloc > 16 {
		return nil, fmt.Errorf("dicom: JPEG-LS frame of %d bytes with BitsAllocated %d", len(frame), in.bitsAlloc)
	}
	// CharLS 2.4.1 can loop forever on damaged scan data that runs to the
	// end of the buffer without an EOI marker (found by FuzzDecode), so the
	// frame must end with one (after any padding bytes).
	end := len(frame)
	for end > 2 && frame[end-1] == 0 {
		end--
	}
	if end < 4 || frame[end-2] != 0xFF || frame[end-1] != 0xD9 {
		return nil, fmt.Errorf("dicom: JPEG-LS frame does not end with an EOI marker (truncated or damaged)")
	}
	frame = frame[:end]
	src := unsafe.Pointer(&frame[0])
	var fi C.charls_frame_info
	var ilv C.int32_t
	if e := C.jls_info(src, C.size_t(len(frame)), &fi, &ilv); e != 0 {
		return nil, fmt.Errorf("dicom: JPEG-LS header: CharLS error %d", int(e))
	}
	w, h, comps, bits := int(fi.width), int(fi.height), int(fi.component_count), int(fi.bits_per_sample)
	if err := checkGeometry(in, w, h, comps, bits); err != nil {
		return nil, err
	}
	bps := 1
	if bits > 8 {
		bps = 2
	}
	buf := make([]byte, w*h*comps*bps)
	if e := C.jls_decode(src, C.size_t(len(frame)), unsafe.Pointer(&buf[0]), C.size_t(len(buf))); e != 0 {
		return nil, fmt.Errorf("dicom: JPEG-LS decode: CharLS error %d", int(e))
	}
	if comps > 1 && ilv == C.CHARLS_INTERLEAVE_MODE_NONE {
		buf = interleave(buf, w*h, comps, bps)
	}
	samples := make([]uint16, w*h*comps)
	for i := range samples {
		if bps == 1 {
			samples[i] = uint16(buf[i])
		} else {
			samples[i] = binary.LittleEndian.Uint16(buf[2*i:])
		}
	}
	// GDCM returns JPEG-LS samples without sign extension.
	return packSamples(in, samples, 0), nil
}

// decodeJ2K decodes a JPEG 2000 frame with OpenJPEG. The codec applies the
// inverse colour transform of YBR_RCT/YBR_ICT data. Unsigned codestreams
// in signed files are sign-extended from their precision, as pydicom's
// GDCM handler does.
func decodeJ2K(in *info, frame []byte, lim pixels.Limits) ([]byte, error) {
	if len(frame) == 0 || in.bitsAlloc == 1 {
		return nil, fmt.Errorf("dicom: JPEG 2000 frame of %d bytes with BitsAllocated %d", len(frame), in.bitsAlloc)
	}
	cdata := C.CBytes(frame)
	defer C.free(cdata)
	d := (*C.j2kdec)(C.calloc(1, C.sizeof_j2kdec))
	defer C.free(unsafe.Pointer(d))
	defer C.j2k_free(d)
	if e := C.j2k_header(d, (*C.uchar)(cdata), C.size_t(len(frame))); e != 0 {
		return nil, fmt.Errorf("dicom: JPEG 2000 header unreadable (OpenJPEG step %d)", int(e))
	}
	img := d.image
	comps := int(img.numcomps)
	w, h := int(img.x1-img.x0), int(img.y1-img.y0)
	if comps < 1 || comps > 4 {
		return nil, fmt.Errorf("dicom: JPEG 2000 codestream has %d components", comps)
	}
	prec, signed := 0, false
	for i := 0; i < comps; i++ {
		c := C.j2k_comp(d, C.int(i))
		if c.dx != 1 || c.dy != 1 {
			return nil, unsupported(in.ts, "subsampled JPEG 2000 components")
		}
		prec, signed = max(prec, int(c.prec)), c.sgnd != 0
	}
	if err := checkGeometry(in, w, h, comps, prec); err != nil {
		return nil, err
	}
	if e := C.j2k_decode(d); e != 0 {
		return nil, fmt.Errorf("dicom: JPEG 2000 decode failed (OpenJPEG step %d)", int(e))
	}
	n := w * h
	vals := make([]int64, n*comps)
	for i := 0; i < comps; i++ {
		c := C.j2k_comp(d, C.int(i))
		if int(c.w) != w || int(c.h) != h || c.data == nil {
			return nil, fmt.Errorf("dicom: JPEG 2000 component %d is %dx%d, image %dx%d", i, int(c.w), int(c.h), w, h)
		}
		data := unsafe.Slice((*C.OPJ_INT32)(unsafe.Pointer(c.data)), n)
		for p, v := range data {
			vals[p*comps+i] = int64(v)
		}
	}
	return packInts(in, vals, prec, signed), nil
}
