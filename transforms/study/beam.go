package study

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"io"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

func init() {
	for _, t := range []reflect.Type{reflect.TypeFor[Slice](), reflect.TypeFor[Group](), reflect.TypeFor[Accumulator]()} {
		beam.RegisterType(t)
	}
	// Slices, groups and accumulators carry maps, pointers and anomaly
	// maps; they travel gob-encoded.
	// (Beam resolves coder functions by symbol name, so each type has its
	// own non-generic pair.)
	beam.RegisterCoder(reflect.TypeFor[Slice](), encodeSlice, decodeSlice)
	beam.RegisterCoder(reflect.TypeFor[Group](), encodeGroup, decodeGroup)
	beam.RegisterCoder(reflect.TypeFor[Accumulator](), encodeAccumulator, decodeAccumulator)
	register.Combiner3[Accumulator, Slice, Group](&CombineFn{})
	register.DoFn2x0[score.Result, func(score.Result)](&identifyFn{})
	register.DoFn2x0[score.Result, func(string, Slice)](&keyFn{})
	register.Function3x0[score.Result, func(score.Result), func(score.Result)](splitSingle)
	register.DoFn2x0[score.Result, func(Group)](&singleFn{})
	register.Emitter1[Group]()
	register.Function2x1[string, Group, Group](withKey)
	register.Emitter1[score.Result]()
	register.Emitter2[string, Slice]()
}

func encodeSlice(v Slice) ([]byte, error)             { return encodeGob(v) }
func decodeSlice(b []byte) (Slice, error)             { return decodeGob[Slice](b) }
func encodeGroup(v Group) ([]byte, error)             { return encodeGob(v) }
func decodeGroup(b []byte) (Group, error)             { return decodeGob[Group](b) }
func encodeAccumulator(v Accumulator) ([]byte, error) { return encodeGob(v) }
func decodeAccumulator(b []byte) (Accumulator, error) { return decodeGob[Accumulator](b) }

func encodeGob[T any](v T) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, fmt.Errorf("study: encoding %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

func decodeGob[T any](b []byte) (T, error) {
	var v T
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil && err != io.EOF {
		return v, fmt.Errorf("study: decoding %T: %w", v, err)
	}
	return v, nil
}

// Identify replaces the study and series UIDs of a PCollection<score.Result>
// by their salted hashes (HashUID) when salt is not empty; it returns
// results unchanged otherwise. Apply it before anything is written.
func Identify(s beam.Scope, results beam.PCollection, salt string) beam.PCollection {
	if salt == "" {
		return results
	}
	return beam.ParDo(s.Scope("study.Identify"), &identifyFn{Salt: salt}, results)
}

type identifyFn struct{ Salt string }

func (f *identifyFn) ProcessElement(r score.Result, emit func(score.Result)) {
	r.Item.Study, r.Item.Series = HashUID(f.Salt, r.Item.Study), HashUID(f.Salt, r.Item.Series)
	emit(r)
}

// Options configure Groups.
type Options struct {
	// K is the number of top slice scores averaged into a group's score
	// (ParseScore; 0 or 1: the maximum).
	K int
	// Keep is the number of top slices a Group lists (DefaultTop when 0).
	Keep int
	// Threshold is the bundle's score threshold: a group is anomalous when
	// its score exceeds it.
	Threshold float64
	// Heatmaps and SkipWritten are the WriteOptions the groups will be
	// written with. With them, Groups drops the maps of slices whose study
	// heatmap Write would not draw: every map with mode none; with
	// SkipWritten, the slices whose own heatmap report.Write draws, and
	// every slice of a one-image study (a single 2-D file, whose study is
	// anomalous exactly when its image is). Maps are what a CombinePerKey
	// holds until its input ends, so over an archive of 2-D images this
	// keeps memory flat. Empty Heatmaps keeps every map.
	Heatmaps    string
	SkipWritten bool
}

// Groups combines a PCollection<score.Result> into a PCollection<Group>:
// one per study and one per DICOM series. It is the Flatten of GroupParts;
// to write the groups, pass GroupParts to Write instead, which keeps the
// one-image groups of 2-D files out of the runner's buffers.
//
// A plain 2-D image (no study UID, not a slice or frame) is a study of its
// own: its group is made from it alone (singleFn, the CombineFn applied to
// one slice), without the CombinePerKey, whose runner keeps an accumulator
// per key until the input ends, one per image over an archive of 2-D
// images. (So a manifest that lists one 2-D file twice gives two one-image
// studies of it.)
func Groups(s beam.Scope, results beam.PCollection, opt Options) beam.PCollection {
	s = s.Scope("study.Groups")
	return beam.Flatten(s, groupParts(s, results, opt)...)
}

// GroupParts is Groups without its final Flatten: the groups of studies
// and series combined from several slices, and the one-image groups of
// plain 2-D files, as two PCollection<Group>. A Flatten is a stage
// boundary on Prism, and the runner holds every element that crosses one
// until the bundle that made it ends, which on Prism is often the whole
// input; the one-image groups, one per 2-D file, stay in the stage that
// scores them when Write gets the parts:
//
//	study.Write(s, wopt, study.GroupParts(s, results, opt)...)
func GroupParts(s beam.Scope, results beam.PCollection, opt Options) []beam.PCollection {
	return groupParts(s.Scope("study.GroupParts"), results, opt)
}

// groupParts adds GroupParts' steps to s.
func groupParts(s beam.Scope, results beam.PCollection, opt Options) []beam.PCollection {
	kf := keyFn{Heatmaps: opt.Heatmaps, SkipWritten: opt.SkipWritten}
	cf := &CombineFn{K: opt.K, Keep: opt.Keep, Threshold: opt.Threshold}
	single, grouped := beam.ParDo2(s, splitSingle, results)
	keyed := beam.ParDo(s, &kf, grouped)
	combined := beam.ParDo(s, withKey, beam.CombinePerKey(s, cf, keyed))
	alone := beam.ParDo(s, &singleFn{Key: kf, Combine: *cf}, single)
	return []beam.PCollection{combined, alone}
}

// isSingle reports whether a slice is a plain 2-D image, alone in its
// study (keyed by its file) and in no series.
func isSingle(sl Slice) bool { return sl.Study == "" && sl.IndexKind == "" && sl.Series == "" }

// splitSingle sends plain 2-D images to single and the rest to grouped.
func splitSingle(r score.Result, single, grouped func(score.Result)) {
	if isSingle(FromResult(r)) {
		single(r)
	} else {
		grouped(r)
	}
}

// singleFn makes the group of a plain 2-D image: what the CombinePerKey
// would make of its one slice.
type singleFn struct {
	Key     keyFn
	Combine CombineFn
}

func (f *singleFn) ProcessElement(r score.Result, emit func(Group)) {
	f.Key.ProcessElement(r, func(k string, sl Slice) {
		emit(withKey(k, f.Combine.ExtractOutput(f.Combine.AddInput(f.Combine.CreateAccumulator(), sl))))
	})
}

// keyFn keys a result's Slice by its study and series, without the maps
// the study report will not draw (Options.Heatmaps).
type keyFn struct {
	Heatmaps    string
	SkipWritten bool
}

func (f *keyFn) ProcessElement(r score.Result, emit func(string, Slice)) {
	sl := FromResult(r)
	if f.Heatmaps != "" && sl.Map != nil {
		own := report.WritesHeatmap(f.Heatmaps, sl.Anomalous)
		single := sl.Study == "" && sl.IndexKind == ""
		if f.Heatmaps == report.HeatmapsNone || f.SkipWritten && (own || single) {
			if own {
				sl.Heatmap = report.HeatmapName(r.Item) // as Heatmaps names it
			}
			sl.Size, sl.Map, sl.Gray, sl.View = 0, nil, nil, nil
		}
	}
	for _, k := range Keys(sl) {
		emit(k, sl)
	}
}
