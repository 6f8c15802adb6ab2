package read

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/log"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/pixels"
)

// maskCacheSize is how many decoded mask files one worker keeps: masks are
// volumes shared by many slices (one per patient), so consecutive items
// usually hit the cache.
const maskCacheSize = 4

var (
	imagesCount = beam.NewCounter("multiad", "images_decoded")
	failedCount = beam.NewCounter("multiad", "read_failed")
)

// expandFn decodes a File and emits one Decoded per image, slice or frame
// that its items ask for. With Prefetch, it decodes up to Prefetch files on
// other goroutines while it emits the images of the oldest, in order
// (Options.Prefetch).
type expandFn struct {
	Limits   pixels.Limits
	Prefetch int

	masks   []maskEntry        // most recent last
	pending []chan decodedFile // files being decoded ahead, oldest first
	// decodeURI decodes a file (decode.URI unless a test sets it).
	decodeURI func(ctx context.Context, uri string, limits pixels.Limits) ([]*pixels.Image, error)
}

// decodedFile is a File and what decoding it gave.
type decodedFile struct {
	file   File
	images []*pixels.Image
	err    error
}

type maskEntry struct {
	uri    string
	images []*pixels.Image
	err    error
}

func (f *expandFn) ProcessElement(ctx context.Context, file File, emit func(Decoded), fail func(Failure)) {
	if f.Prefetch <= 0 {
		var d decodedFile
		if d.file = file; file.Error == "" {
			d.images, d.err = f.decode(ctx, file.URI)
		}
		f.expand(ctx, d, emit, fail)
		return
	}
	done := make(chan decodedFile, 1)
	f.pending = append(f.pending, done)
	if file.Error != "" {
		done <- decodedFile{file: file}
	} else {
		go func() {
			d := decodedFile{file: file}
			defer func() {
				// A decoder's panic fails this file, as a decoding
				// error would, instead of the process.
				if r := recover(); r != nil {
					d.images, d.err = nil, fmt.Errorf("read: %s: decoder panic: %v", file.URI, r)
				}
				done <- d
			}()
			d.images, d.err = f.decode(ctx, file.URI)
		}()
	}
	for len(f.pending) > f.Prefetch {
		f.expandOldest(ctx, emit, fail)
	}
}

// FinishBundle emits the files still being decoded ahead.
func (f *expandFn) FinishBundle(ctx context.Context, emit func(Decoded), fail func(Failure)) {
	for len(f.pending) > 0 {
		f.expandOldest(ctx, emit, fail)
	}
}

// expandOldest waits for the oldest file being decoded ahead and emits it.
func (f *expandFn) expandOldest(ctx context.Context, emit func(Decoded), fail func(Failure)) {
	d := <-f.pending[0]
	f.pending[0] = nil
	f.pending = f.pending[1:]
	f.expand(ctx, d, emit, fail)
}

// expand emits a decoded file's images, or its items' failures.
func (f *expandFn) expand(ctx context.Context, d decodedFile, emit func(Decoded), fail func(Failure)) {
	file, images, err := d.file, d.images, d.err
	emit, fail = counted(ctx, emit, fail)
	failAll := func(msg string) {
		for _, it := range file.Items {
			fail(Failure{URI: it.URI, Index: it.Index, Error: msg})
		}
	}
	if file.Error != "" {
		failAll(file.Error)
		return
	}
	if err != nil {
		log.Debugf(ctx, "read: %v", err)
		failAll(err.Error())
		return
	}
	for _, it := range file.Items {
		if it.Index < 0 {
			for _, img := range images {
				out := it
				if len(images) > 1 || img.IndexKind != "" {
					out.Index, out.IndexKind = img.Index, img.IndexKind
					if len(images) > 1 && out.MaskURI != "" && out.MaskURI != EmptyMask {
						out.MaskIndex = img.Index
					}
				}
				f.emitOne(ctx, out, img, emit, fail)
			}
			continue
		}
		img := pick(images, it.Index)
		if img == nil {
			fail(Failure{URI: it.URI, Index: it.Index, Error: fmt.Sprintf("read: %s: slice %d not found (the file has %d images)", it.URI, it.Index, len(images))})
			continue
		}
		out := it
		out.IndexKind = img.IndexKind
		if out.IndexKind == "" {
			out.IndexKind = "slice"
		}
		f.emitOne(ctx, out, img, emit, fail)
	}
}

// counted wraps the emitters to count decoded images and failures.
func counted(ctx context.Context, emit func(Decoded), fail func(Failure)) (func(Decoded), func(Failure)) {
	return func(d Decoded) { imagesCount.Inc(ctx, 1); emit(d) },
		func(f Failure) { failedCount.Inc(ctx, 1); fail(f) }
}

// emitOne attaches the mask and emits the image, or a Failure when the mask
// cannot be loaded.
func (f *expandFn) emitOne(ctx context.Context, it Item, img *pixels.Image, emit func(Decoded), fail func(Failure)) {
	mask, err := f.mask(ctx, it, img)
	if err != nil {
		fail(Failure{URI: it.URI, Index: it.Index, Error: err.Error()})
		return
	}
	if id := img.Meta.Identity; it.Study == "" && it.Series == "" {
		it.Study, it.Series = id.StudyInstanceUID, id.SeriesInstanceUID
	}
	emit(Decoded{Item: it, Image: img, Mask: mask})
}

// decode reads and decodes one file.
func (f *expandFn) decode(ctx context.Context, uri string) ([]*pixels.Image, error) {
	decodeURI := f.decodeURI
	if decodeURI == nil {
		decodeURI = decode.URI
	}
	images, err := decodeURI(ctx, uri, f.Limits)
	if err != nil {
		return nil, err
	}
	if len(images) == 0 {
		return nil, fmt.Errorf("read: %s: no images", uri)
	}
	return images, nil
}

// pick returns the image with the given slice or frame index.
func pick(images []*pixels.Image, index int) *pixels.Image {
	for _, img := range images {
		if img.Index == index {
			return img
		}
	}
	if len(images) == 1 && index == 0 {
		return images[0]
	}
	return nil
}

// mask returns the item's binary mask at the image's size, or nil.
func (f *expandFn) mask(ctx context.Context, it Item, img *pixels.Image) ([]uint8, error) {
	switch it.MaskURI {
	case "":
		return nil, nil
	case EmptyMask:
		return make([]uint8, img.Rows*img.Cols), nil
	}
	var e *maskEntry
	for i := range f.masks {
		if f.masks[i].uri == it.MaskURI {
			e = &f.masks[i]
		}
	}
	if e == nil {
		images, err := f.decode(ctx, it.MaskURI)
		if len(f.masks) == maskCacheSize {
			f.masks = f.masks[1:]
		}
		f.masks = append(f.masks, maskEntry{uri: it.MaskURI, images: images, err: err})
		e = &f.masks[len(f.masks)-1]
	}
	if e.err != nil {
		return nil, fmt.Errorf("read: mask: %w", e.err)
	}
	var m *pixels.Image
	if it.MaskIndex < 0 {
		if len(e.images) != 1 {
			return nil, fmt.Errorf("read: mask %s has %d slices; the manifest must give mask_slice", it.MaskURI, len(e.images))
		}
		m = e.images[0]
	} else if m = pick(e.images, it.MaskIndex); m == nil {
		return nil, fmt.Errorf("read: mask %s: slice %d not found (it has %d)", it.MaskURI, it.MaskIndex, len(e.images))
	}
	if m.Rows != img.Rows || m.Cols != img.Cols {
		return nil, fmt.Errorf("read: mask %s is %dx%d, the image %dx%d", it.MaskURI, m.Rows, m.Cols, img.Rows, img.Cols)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("read: mask %s: %w", it.MaskURI, err)
	}
	out := make([]uint8, m.Rows*m.Cols)
	if m.DType == pixels.Uint8 { // PNG masks: the first channel's bytes
		for i := range out {
			if m.Data[i*m.Channels] > 0 {
				out[i] = 1
			}
		}
		return out, nil
	}
	for i := range out {
		if m.At(i*m.Channels) > 0 {
			out[i] = 1
		}
	}
	return out, nil
}
