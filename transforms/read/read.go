// Package read lists and decodes the images that a scoring pipeline scores.
//
// An input is a glob, a directory, a manifest CSV or an MVTec AD layout (a
// directory with test/ and ground_truth/). ReadImages lists it in one step
// (ListEach: a manifest is read row by row, never held whole), reshuffles
// the listed files across workers (unless Options.NoReshuffle),
// and only then decodes them, expanding volumes and multi-frame files into one element per slice or
// frame, so that one large file does not pin a worker. Inputs that cannot be
// read or decoded are never dropped: they become Failures.
package read

import (
	"context"
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"

	"github.com/multiad/multiad/internal/gobcoder"
	"github.com/multiad/multiad/io/pixels"
)

// Item is one image, slice or frame to score.
type Item struct {
	// URI is the file holding the image.
	URI string
	// Index is the slice or frame within URI, or -1 for a single image (or,
	// before expansion, for "every slice").
	Index int
	// IndexKind is "slice", "frame" or "" (from the decoder).
	IndexKind string
	// Label is 0 (normal), 1 (anomalous) or -1 (unknown).
	Label int
	// MaskURI is the ground-truth mask file, EmptyMask for a known-normal
	// image with an all-zero mask, or "" when there is no mask.
	MaskURI string
	// MaskIndex is the slice of MaskURI to use (-1: a single image).
	MaskIndex int
	// Group is the MVTec defect type of a defective image ("" for good ones).
	Group string
	// Meta holds the extra manifest columns (e.g. patient).
	Meta map[string]string
	// Study and Series identify the study and series the image belongs
	// to: the DICOM StudyInstanceUID and SeriesInstanceUID as decoded
	// (empty for other formats). Package study may replace them with
	// salted hashes before anything is written.
	Study, Series string
}

// EmptyMask is the MaskURI of a normal image whose mask is all zero (MVTec
// test/good images, manifest rows labelled 0 without a mask_uri).
const EmptyMask = "empty:"

// Failure is an input that could not be read, decoded or scored.
type Failure struct {
	URI   string
	Index int
	Error string
}

// File is one listed file with the manifest rows (or the single item) that
// refer to it; decoding happens once per File.
type File struct {
	URI   string
	Items []Item
	// Error, when set, fails every item (an unparsable manifest row).
	Error string
}

// Decoded is a decoded image with its ground-truth mask slice, if any.
type Decoded struct {
	Item  Item
	Image *pixels.Image
	// Mask is the mask slice at the image's size, values 0 or 1; nil when
	// the item has no mask.
	Mask []uint8
}

// Options configure ReadImages.
type Options struct {
	// Limits bound what decoders allocate and the size of the files they
	// read (zero: pixels.DefaultLimits).
	Limits pixels.Limits
	// NoReshuffle decodes each file in the step that lists it. Without it,
	// ReadFiles reshuffles the files first, which spreads them over a
	// distributed runner's workers; on a runner with one worker process
	// (Prism) the reshuffle only makes the runner hold every listed file
	// until listing ends, memory that grows with the input.
	NoReshuffle bool
	// Prefetch is how many files ReadFiles decodes ahead, each on its own
	// goroutine and with its masks, while the images of the file before
	// them go down the pipeline (0: each file is decoded when its turn
	// comes). On a runner that runs the whole pipeline in one bundle (Prism
	// with NoReshuffle), decoding then leaves the goroutine that also
	// preprocesses, emits and writes every image. Images and failures still
	// come out in listing order. A multi-image file (a volume) is held
	// whole, with its masks, while it waits, so memory grows with Prefetch
	// times the largest file.
	Prefetch int
}

// Output holds ReadImages' collections.
type Output struct {
	// Images is a PCollection<Decoded>: one element per image, slice or frame.
	Images beam.PCollection
	// Failures is a PCollection<Failure>.
	Failures beam.PCollection
	// Inputs is a PCollection<int> with one element: the number of input
	// rows (manifest rows, or 1 per listed file), the run's input count.
	// (It has none when nothing is listed.)
	Inputs beam.PCollection
}

func init() {
	beam.RegisterType(reflect.TypeOf((*Item)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Failure)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*File)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Decoded)(nil)).Elem())
	beam.RegisterCoder(reflect.TypeOf((*Decoded)(nil)).Elem(), encodeDecoded, decodeDecoded)
	register.DoFn3x1[context.Context, []byte, func(File), error](&listFn{})
	register.DoFn4x0[context.Context, File, func(Decoded), func(Failure)](&expandFn{})
	register.Function1x1[File, int](rowCount)
	register.Emitter1[File]()
	register.Emitter1[Decoded]()
	register.Emitter1[Failure]()
}

// ReadImages lists input and decodes every image, slice and frame in it.
// It is ListFiles followed by ReadFiles.
func ReadImages(s beam.Scope, input string, opt Options) Output {
	s = s.Scope("ReadImages")
	return ReadFiles(s, ListFiles(s, input), opt)
}

// ListFiles lists input (see ListEach) into a PCollection<File>, in one
// step, without holding the listing: a manifest is read row by row, and a
// file whose manifest rows are not adjacent comes as one File per run of
// rows. A pipeline that selects files (e.g. only new ones) filters this
// collection and hands the rest to ReadFiles.
func ListFiles(s beam.Scope, input string) beam.PCollection {
	return beam.ParDo(s, &listFn{Input: input}, beam.Impulse(s))
}

// ReadFiles reshuffles a PCollection<File> across workers (unless
// opt.NoReshuffle) and decodes every image, slice and frame its items ask
// for.
func ReadFiles(s beam.Scope, files beam.PCollection, opt Options) Output {
	inputs := stats.Sum(s, beam.ParDo(s, rowCount, files))
	if !opt.NoReshuffle {
		files = beam.Reshuffle(s, files)
	}
	images, failures := beam.ParDo2(s, &expandFn{Limits: opt.Limits, Prefetch: opt.Prefetch}, files)
	return Output{Images: images, Failures: failures, Inputs: inputs}
}

func rowCount(f File) int { return len(f.Items) }

// listFn lists the input into Files.
type listFn struct {
	Input string
}

func (f *listFn) ProcessElement(ctx context.Context, _ []byte, emit func(File)) error {
	return ListEach(ctx, f.Input, func(fl File) error {
		emit(fl)
		return nil
	})
}

// String names the step in logs.
func (f *listFn) String() string { return fmt.Sprintf("list(%s)", f.Input) }

// Decoded elements carry large float and byte slices; they travel
// gob-encoded (see internal/gobcoder).
func encodeDecoded(v Decoded) ([]byte, error) { return gobcoder.Encode(v) }

func decodeDecoded(b []byte) (Decoded, error) { return gobcoder.Decode[Decoded](b) }
