package read

import (
	"context"
	"fmt"
	"sync"

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
// that its items ask for. With Prefetch, it decodes up to Prefetch files,
// with their masks, on other goroutines while it emits the images of the
// oldest, in order (Options.Prefetch).
type expandFn struct {
	Limits   pixels.Limits
	Prefetch int

	masks   maskCache
	pending []chan []output // files being decoded ahead, oldest first
	// decodeURI decodes a file (decode.URI unless a test sets it).
	decodeURI func(ctx context.Context, uri string, limits pixels.Limits) ([]*pixels.Image, error)
}

// output is one image to emit, with its mask attached, or one failure.
type output struct {
	d    Decoded
	fail *Failure
}

func (f *expandFn) ProcessElement(ctx context.Context, file File, emit func(Decoded), fail func(Failure)) {
	if f.Prefetch <= 0 {
		f.emit(ctx, f.expand(ctx, file), emit, fail)
		return
	}
	done := make(chan []output, 1)
	f.pending = append(f.pending, done)
	go func() {
		var outs []output
		defer func() {
			if r := recover(); r != nil {
				outs = failAll(file, decoderPanic(file.URI, r).Error())
			}
			done <- outs
		}()
		outs = f.expand(ctx, file)
	}()
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
	outs := <-f.pending[0]
	f.pending[0] = nil
	f.pending = f.pending[1:]
	f.emit(ctx, outs, emit, fail)
}

// emit emits a file's outputs, in order, counting them.
func (f *expandFn) emit(ctx context.Context, outs []output, emit func(Decoded), fail func(Failure)) {
	for _, o := range outs {
		if o.fail != nil {
			failedCount.Inc(ctx, 1)
			fail(*o.fail)
			continue
		}
		imagesCount.Inc(ctx, 1)
		emit(o.d)
	}
}

// failAll fails every item of file with msg.
func failAll(file File, msg string) []output {
	outs := make([]output, len(file.Items))
	for i, it := range file.Items {
		outs[i].fail = &Failure{URI: it.URI, Index: it.Index, Error: msg}
	}
	return outs
}

// expand decodes a file and returns its images, with their masks, or its
// items' failures. It may run on a goroutine of its own (Prefetch).
func (f *expandFn) expand(ctx context.Context, file File) []output {
	if file.Error != "" {
		return failAll(file, file.Error)
	}
	images, err := f.decode(ctx, file.URI)
	if err != nil {
		log.Debugf(ctx, "read: %v", err)
		return failAll(file, err.Error())
	}
	var outs []output
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
				outs = append(outs, f.withMask(ctx, out, img))
			}
			continue
		}
		img := pick(images, it.Index)
		if img == nil {
			outs = append(outs, output{fail: &Failure{URI: it.URI, Index: it.Index,
				Error: fmt.Sprintf("read: %s: slice %d not found (the file has %d images)", it.URI, it.Index, len(images))}})
			continue
		}
		out := it
		out.IndexKind = img.IndexKind
		if out.IndexKind == "" {
			out.IndexKind = "slice"
		}
		outs = append(outs, f.withMask(ctx, out, img))
	}
	return outs
}

// withMask attaches the item's mask to the image, or fails the item when
// the mask cannot be loaded.
func (f *expandFn) withMask(ctx context.Context, it Item, img *pixels.Image) output {
	mask, err := f.mask(ctx, it, img)
	if err != nil {
		return output{fail: &Failure{URI: it.URI, Index: it.Index, Error: err.Error()}}
	}
	if id := img.Meta.Identity; it.Study == "" && it.Series == "" {
		it.Study, it.Series = id.StudyInstanceUID, id.SeriesInstanceUID
	}
	return output{d: Decoded{Item: it, Image: img, Mask: mask}}
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

// decoderPanic is the error of a decoder that panicked (r) on uri, read
// ahead: it fails the items that need the file, as a decoding error would,
// instead of the process.
func decoderPanic(uri string, r any) error { return fmt.Errorf("read: %s: decoder panic: %v", uri, r) }

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
	e := f.masks.get(it.MaskURI, func() ([]*pixels.Image, error) { return f.decode(ctx, it.MaskURI) })
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

// maskCache keeps the maskCacheSize mask files used last. The files
// decoded ahead share it, and a mask file is decoded once even when two
// of them ask for it at the same time.
type maskCache struct {
	mu      sync.Mutex
	entries []*maskEntry // most recent last
}

type maskEntry struct {
	uri    string
	done   chan struct{} // closed when images and err are set
	images []*pixels.Image
	err    error
}

// get returns the entry of uri, decoding it with decode when the cache
// does not hold it.
func (c *maskCache) get(uri string, decode func() ([]*pixels.Image, error)) *maskEntry {
	c.mu.Lock()
	for _, e := range c.entries {
		if e.uri == uri {
			c.mu.Unlock()
			<-e.done
			return e
		}
	}
	e := &maskEntry{uri: uri, done: make(chan struct{})}
	if len(c.entries) == maskCacheSize {
		c.entries = append(c.entries[:0], c.entries[1:]...)
	}
	c.entries = append(c.entries, e)
	c.mu.Unlock()
	defer close(e.done)
	defer func() {
		if r := recover(); r != nil { // for every item that asks
			e.images, e.err = nil, decoderPanic(uri, r)
		}
	}()
	e.images, e.err = decode()
	return e
}
