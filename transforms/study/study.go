// Package study groups scored slices into series and studies in a Beam
// pipeline and writes studies.jsonl.
//
// A slice belongs to the study and series named by its DICOM
// StudyInstanceUID and SeriesInstanceUID (read.Item.Study and Series); a
// slice of another format belongs to the study of its file (a NIfTI volume
// is one study, a plain image a study of one slice) and to no series
// besides. Identify replaces the UIDs by salted hashes before anything is
// written, when asked to. Groups combines the slices of each study and
// series (a CombinePerKey) into a Group: its score (the maximum slice
// score, or the mean of the top K), verdict, label, slice counts and top
// slices. Write writes studies.jsonl, the heatmaps of the top slices and
// the study digest that report.Finish turns into summary.json's "studies"
// and report.html's study table.
//
// Labels: a study_label manifest column gives a study's label (and its
// series'); without one it is derived from the slices: abnormal when any
// slice is labelled 1, normal when every slice is labelled 0, unknown
// otherwise.
package study

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

// Levels of a Group.
const (
	LevelStudy  = "study"
	LevelSeries = "series"
)

// LabelColumn is the manifest column that gives a study's label (0 or 1).
const LabelColumn = "study_label"

// DefaultTop is the number of top slices a Group keeps.
const DefaultTop = 3

// ParseScore parses a study score rule: "max" (K = 1) or "topk:K", the
// mean of the K highest slice scores (of all slices when a group has
// fewer).
func ParseScore(s string) (k int, err error) {
	switch {
	case s == "" || s == "max":
		return 1, nil
	case strings.HasPrefix(s, "topk:"):
		k, err := strconv.Atoi(strings.TrimPrefix(s, "topk:"))
		if err != nil || k < 1 || k > 10000 {
			return 0, fmt.Errorf("study: score rule %q: K must be an integer in [1, 10000]", s)
		}
		return k, nil
	}
	return 0, fmt.Errorf("study: score rule %q: want max or topk:K", s)
}

// HashUID returns the salted hash that stands for a UID in the outputs
// with --hash-uids: the first 16 bytes of HMAC-SHA256(salt, uid), in hex.
// The same salt gives the same identifier in every run, so that runs can be
// joined; without the salt the UID cannot be recovered by hashing
// candidate UIDs.
func HashUID(salt, uid string) string {
	if uid == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(salt))
	m.Write([]byte(uid))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Slice is one scored image as a group sees it.
type Slice struct {
	URI       string
	Index     int
	IndexKind string
	Score     float64
	Anomalous bool
	// Label is the slice label (0, 1 or -1 unknown); StudyLabel the value
	// of the study_label column ("" when absent).
	Label      int
	StudyLabel string
	Study      string
	Series     string
	// Meta holds the manifest columns.
	Meta map[string]string
	// Heatmap is the slice's heatmap, relative to the output folder, when
	// known (merging earlier runs' scores); Write fills it otherwise.
	Heatmap string
	// Size, Map, Gray and Rows, Cols are the score.Result fields an
	// overlay is drawn from; empty when the maps were not kept.
	Size       int
	Map        []float32
	Gray       []uint8
	Rows, Cols int
	// View is the slice at its own size (score.Result.View), for heatmaps.
	View []uint8
	// Identity is the DICOM identity, only with --include-phi.
	Identity *pixels.Identity
}

// FromResult makes the Slice of a scored image.
func FromResult(r score.Result) Slice {
	it := r.Item
	return Slice{URI: it.URI, Index: it.Index, IndexKind: it.IndexKind, Score: r.Score, Anomalous: r.Anomalous,
		Label: it.Label, StudyLabel: strings.TrimSpace(it.Meta[LabelColumn]), Study: it.Study, Series: it.Series,
		Meta: it.Meta, Size: r.Size, Map: r.Map, Gray: r.Gray, Rows: r.Rows, Cols: r.Cols, View: r.View, Identity: r.Identity}
}

// Result returns the score.Result of a slice (for overlays).
func (s Slice) Result() score.Result {
	return score.Result{Item: read.Item{URI: s.URI, Index: s.Index, IndexKind: s.IndexKind, Label: s.Label,
		Study: s.Study, Series: s.Series, MaskIndex: -1}, Score: s.Score, Anomalous: s.Anomalous,
		Size: s.Size, Map: s.Map, Gray: s.Gray, Rows: s.Rows, Cols: s.Cols, View: s.View}
}

// StudyOf returns the study identifier of a slice: its study UID, or its
// file.
func StudyOf(s Slice) string {
	if s.Study != "" {
		return s.Study
	}
	return s.URI
}

// Keys returns the combine keys of a slice: its study's, and its series'
// when it has a series UID.
func Keys(s Slice) []string {
	keys := []string{LevelStudy + "\x00" + StudyOf(s)}
	if s.Series != "" {
		keys = append(keys, LevelSeries+"\x00"+StudyOf(s)+"\x00"+s.Series)
	}
	return keys
}

// parseKey splits a combine key into level, study and series.
func parseKey(k string) (level, study, series string) {
	parts := strings.SplitN(k, "\x00", 3)
	level, study = parts[0], parts[1]
	if len(parts) == 3 {
		series = parts[2]
	}
	return level, study, series
}

// Group is a study or a series with its slices combined.
type Group struct {
	// Level is LevelStudy or LevelSeries.
	Level  string
	Study  string
	Series string
	// Score is the max (or top-K mean) of the slice scores; Anomalous is
	// Score > the bundle threshold.
	Score     float64
	Anomalous bool
	// Label is 1 abnormal, 0 normal, -1 unknown; LabelConflict is set when
	// the study_label column disagrees between slices (Label is then -1).
	Label         int
	LabelConflict bool
	// Slices counts the slices, AnomalousSlices those above the
	// threshold, SeriesCount a study's distinct series.
	Slices, AnomalousSlices, SeriesCount int
	// Top holds the highest-scoring slices, highest first.
	Top []Slice
	// Meta holds the manifest columns whose value is the same on every
	// slice.
	Meta map[string]string
	// Identity is a slice's DICOM identity (only with --include-phi).
	Identity *pixels.Identity
}

// Accumulator is the combiner's state for one group.
type Accumulator struct {
	Key                  string
	Slices, Anomalous    int
	Pos, Neg, Unlabelled int
	StudyLabels          int // bit 0: saw "0", bit 1: saw "1", bit 2: saw another value
	Series               []string
	Top                  []Slice
	Meta                 map[string]string
	MetaSeen             bool
	Identity             *pixels.Identity
}

// CombineFn combines the slices of a group (KV<key, Slice>, keys from
// Keys) into a Group.
type CombineFn struct {
	// K is the number of top slices averaged into the score (1: max).
	K int
	// Keep is the number of top slices a Group lists (DefaultTop when 0).
	Keep int
	// Threshold is the bundle's score threshold.
	Threshold float64
}

func (f *CombineFn) keep() int {
	if f.Keep > 0 {
		return f.Keep
	}
	return DefaultTop
}

// kept is the number of top slices an accumulator holds.
func (f *CombineFn) kept() int { return max(f.keep(), f.K) }

// CreateAccumulator returns an empty accumulator.
func (f *CombineFn) CreateAccumulator() Accumulator { return Accumulator{} }

// AddInput adds one slice.
func (f *CombineFn) AddInput(a Accumulator, s Slice) Accumulator {
	b := Accumulator{Slices: 1, Top: []Slice{s}, Meta: s.Meta, MetaSeen: true, Identity: s.Identity}
	if s.Anomalous {
		b.Anomalous = 1
	}
	switch s.Label {
	case 0:
		b.Neg = 1
	case 1:
		b.Pos = 1
	default:
		b.Unlabelled = 1
	}
	switch s.StudyLabel {
	case "":
	case "0":
		b.StudyLabels = 1
	case "1":
		b.StudyLabels = 2
	default:
		b.StudyLabels = 4
	}
	if s.Series != "" {
		b.Series = []string{s.Series}
	}
	return f.MergeAccumulators(a, b)
}

// MergeAccumulators merges b into a.
func (f *CombineFn) MergeAccumulators(a, b Accumulator) Accumulator {
	a.Slices += b.Slices
	a.Anomalous += b.Anomalous
	a.Pos += b.Pos
	a.Neg += b.Neg
	a.Unlabelled += b.Unlabelled
	a.StudyLabels |= b.StudyLabels
	for _, s := range b.Series {
		if i := sort.SearchStrings(a.Series, s); i == len(a.Series) || a.Series[i] != s {
			a.Series = append(a.Series[:i], append([]string{s}, a.Series[i:]...)...)
		}
	}
	a.Top = append(a.Top, b.Top...)
	sort.SliceStable(a.Top, func(i, j int) bool { return higher(a.Top[i], a.Top[j]) })
	if len(a.Top) > f.kept() {
		a.Top = a.Top[:f.kept()]
	}
	for i := range a.Top {
		a.Top[i].Meta, a.Top[i].Identity = nil, nil
		if i >= f.keep() { // only the listed slices need their maps
			a.Top[i].Map, a.Top[i].Gray, a.Top[i].View = nil, nil, nil
		}
	}
	switch {
	case !b.MetaSeen:
	case !a.MetaSeen:
		a.Meta, a.MetaSeen = clone(b.Meta), true
	default:
		common := map[string]string{}
		for k, v := range a.Meta {
			if w, ok := b.Meta[k]; ok && w == v {
				common[k] = v
			}
		}
		a.Meta = common
	}
	if a.Identity == nil {
		a.Identity = b.Identity
	}
	return a
}

func clone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// higher orders slices by decreasing score, then by URI and index, so that
// the top slices do not depend on the order of inputs and merges.
func higher(a, b Slice) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	if a.URI != b.URI {
		return a.URI < b.URI
	}
	return a.Index < b.Index
}

// ExtractOutput makes the Group; its Level, Study and Series are filled
// by the caller from the key.
func (f *CombineFn) ExtractOutput(a Accumulator) Group {
	g := Group{Slices: a.Slices, AnomalousSlices: a.Anomalous, SeriesCount: len(a.Series), Identity: a.Identity, Label: -1}
	k := min(max(f.K, 1), len(a.Top))
	for _, s := range a.Top[:k] {
		g.Score += s.Score
	}
	if k > 0 {
		g.Score /= float64(k)
	}
	g.Anomalous = g.Score > f.Threshold
	g.Top = a.Top[:min(len(a.Top), f.keep())]
	switch a.StudyLabels {
	case 0: // derived from the slices
		switch {
		case a.Pos > 0:
			g.Label = 1
		case a.Neg > 0 && a.Unlabelled == 0:
			g.Label = 0
		}
	case 1:
		g.Label = 0
	case 2:
		g.Label = 1
	default:
		g.LabelConflict = true
	}
	g.Meta = a.Meta
	delete(g.Meta, LabelColumn)
	if len(g.Meta) == 0 {
		g.Meta = nil
	}
	return g
}

// Aggregate combines slices into their Groups without a pipeline (for
// merging the scores of several runs), with the same CombineFn that Groups
// uses. The groups are sorted as in studies.jsonl.
func Aggregate(slices []Slice, f *CombineFn) []Group {
	accs := map[string]Accumulator{}
	for _, s := range slices {
		for _, k := range Keys(s) {
			accs[k] = f.AddInput(accs[k], s)
		}
	}
	var out []Group
	for k, a := range accs {
		out = append(out, withKey(k, f.ExtractOutput(a)))
	}
	SortGroups(out)
	return out
}

// withKey fills a group's level and identifiers from its combine key.
func withKey(k string, g Group) Group {
	g.Level, g.Study, g.Series = parseKey(k)
	return g
}

// SortGroups sorts groups as studies.jsonl lists them: studies first, then
// series, each by decreasing score (then by identifier).
func SortGroups(gs []Group) {
	sort.Slice(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.Level != b.Level {
			return a.Level == LevelStudy
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if a.Study != b.Study {
			return a.Study < b.Study
		}
		return a.Series < b.Series
	})
}
