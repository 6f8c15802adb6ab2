package study

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/multiad/multiad/internal/shard"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/report"
)

// File is the studies file in the output folder.
const File = "studies.jsonl"

// Record is one line of studies.jsonl.
type Record struct {
	Level  string  `json:"level"`
	Study  string  `json:"study"`
	Series string  `json:"series,omitempty"`
	Score  float64 `json:"score"`
	// Anomalous is the verdict: Score > the bundle threshold.
	Anomalous       bool `json:"anomalous"`
	Label           *int `json:"label,omitempty"`
	LabelConflict   bool `json:"label_conflict,omitempty"`
	Slices          int  `json:"slices"`
	AnomalousSlices int  `json:"anomalous_slices"`
	SeriesCount     int  `json:"series_count,omitempty"`
	// Top lists the highest-scoring slices with their heatmaps.
	Top  []report.StudySlice `json:"top"`
	Meta map[string]string   `json:"meta,omitempty"`
	// Identity appears only with --include-phi.
	Identity *report.Identity `json:"identity,omitempty"`
}

// NewRecord builds the studies.jsonl line of a group. PHI manifest columns
// and the DICOM identity are left out unless includePHI.
func NewRecord(g Group, includePHI bool) Record {
	r := Record{Level: g.Level, Study: g.Study, Series: g.Series, Score: g.Score, Anomalous: g.Anomalous,
		LabelConflict: g.LabelConflict, Slices: g.Slices, AnomalousSlices: g.AnomalousSlices, SeriesCount: g.SeriesCount,
		Top: []report.StudySlice{}}
	if g.Label >= 0 {
		l := g.Label
		r.Label = &l
	}
	for _, s := range g.Top {
		ts := report.StudySlice{URI: s.URI, Score: s.Score, Heatmap: s.Heatmap}
		if s.Index >= 0 {
			i := s.Index
			if s.IndexKind == "frame" {
				ts.Frame = &i
			} else {
				ts.Slice = &i
			}
		}
		r.Top = append(r.Top, ts)
	}
	for k, v := range g.Meta {
		if !includePHI && report.IsPHIColumn(k) {
			continue
		}
		if r.Meta == nil {
			r.Meta = map[string]string{}
		}
		r.Meta[k] = v
	}
	if includePHI && g.Identity != nil {
		r.Identity = report.IdentityOf(*g.Identity)
	}
	return r
}

// Row returns the report's study table row of a record.
func (r Record) Row() report.StudyRow {
	return report.StudyRow{Level: r.Level, Study: r.Study, Series: r.Series, Score: r.Score, Anomalous: r.Anomalous,
		Label: r.Label, Slices: r.Slices, Top: r.Top}
}

// WriteOptions configure Write.
type WriteOptions struct {
	// Dir is the (staging) output folder.
	Dir string
	// Score is the --study-score value, for the summary ("max" when empty).
	Score string
	// Heatmaps is the --heatmaps mode: none writes none; anomalous the
	// top slices' of anomalous groups (and anomalous slices'); all every
	// top slice's.
	Heatmaps string
	// SkipWritten leaves out the heatmaps that report.Write writes in the
	// same mode into the same folder: they are referenced, not written
	// twice.
	SkipWritten bool
	// Calibration is the bundle's, for heatmap colours (report.Options).
	Calibration bundle.Scores
	// IncludePHI writes PHI manifest columns and the DICOM identity.
	IncludePHI bool
}

// Line is one studies.jsonl line with what the summary needs.
type Line struct {
	Level     string
	Key       string
	Score     float64
	Label     int
	Anomalous bool
	JSON      string
}

func init() {
	beam.RegisterType(reflect.TypeFor[Line]())
	register.DoFn3x1[context.Context, Group, func(string), error](&lineFn{})
	register.DoFn3x1[context.Context, []byte, func(*string) bool, error](&finalFn{})
	register.Emitter1[string]()
	register.Iter1[string]()
}

// Write writes studies.jsonl, the top slices' heatmaps and the study digest
// (report.StudyDigestFile, read by report.Finish) into opt.Dir, from one or
// more PCollection<Group> (Groups, or GroupParts to keep each part in the
// stage that makes it). No step holds every line: each part's lines are
// spilled in sorted shards (package shard) and the shards merged into the
// file, and the digest is computed during the merge. It panics without a
// PCollection or with one of another type.
func Write(s beam.Scope, opt WriteOptions, groups ...beam.PCollection) {
	s = s.Scope("study.Write")
	if len(groups) == 0 {
		panic("study.Write: no PCollection<Group>")
	}
	var shards []beam.PCollection
	for i, g := range groups {
		if t := g.Type().Type(); t != reflect.TypeFor[Group]() {
			panic(fmt.Sprintf("study.Write: groups[%d] is a PCollection<%v>, want PCollection<study.Group>", i, t))
		}
		shards = append(shards, beam.ParDo(s, &lineFn{Opt: opt}, g))
	}
	all := beam.Flatten(s, shards...)
	beam.ParDo0(s, &finalFn{Opt: opt}, beam.Impulse(s), beam.SideInput{Input: all})
}

// spillBytes and mergeFanIn are the studies shards' spill size and merge
// fan-in (tests make them small).
var (
	spillBytes = shard.DefaultSpillBytes
	mergeFanIn = shard.DefaultFanIn
)

// studyShards is the shard format of studies.jsonl lines.
func studyShards() *shard.Format[Line] {
	return &shard.Format[Line]{Name: "studies", Compare: lineCmp, Append: appendLine, Decode: decodeLine,
		SpillBytes: spillBytes, FanIn: mergeFanIn}
}

// lineCmp orders lines as studies.jsonl lists them: studies, then series,
// each by decreasing score, then by key (and JSON, for a total order).
func lineCmp(a, b *Line) int {
	switch {
	case a.Level != b.Level:
		if a.Level == LevelStudy {
			return -1
		}
		if b.Level == LevelStudy {
			return 1
		}
		return strings.Compare(a.Level, b.Level)
	case a.Score != b.Score:
		if a.Score > b.Score {
			return -1
		}
		return 1
	case a.Key != b.Key:
		return strings.Compare(a.Key, b.Key)
	}
	return strings.Compare(a.JSON, b.JSON)
}

// appendLine appends l's shard record to b.
func appendLine(b []byte, l *Line) []byte {
	b = shard.AppendString(shard.AppendString(b, l.Level), l.Key)
	b = binary.AppendVarint(shard.AppendFloat64(b, l.Score), int64(l.Label))
	return shard.AppendString(shard.AppendBool(b, l.Anomalous), l.JSON)
}

// decodeLine decodes a record of appendLine.
func decodeLine(b []byte) (Line, error) {
	d := shard.Decoder{B: b}
	l := Line{Level: d.String(), Key: d.String(), Score: d.Float64(), Label: int(d.Varint()), Anomalous: d.Bool()}
	l.JSON = d.String()
	if err := d.End(); err != nil {
		return Line{}, fmt.Errorf("study: studies line: %w", err)
	}
	return l, nil
}

// lineFn writes a group's top slice heatmaps, formats its line and spills
// the lines in sorted shards, emitting each shard's URI.
type lineFn struct {
	Opt WriteOptions

	spill *shard.Spiller[Line]
}

func (f *lineFn) StartBundle(context.Context, func(string)) {
	f.spill = studyShards().NewSpiller(f.Opt.Dir)
}

func (f *lineFn) ProcessElement(ctx context.Context, g Group, emit func(string)) error {
	if err := Heatmaps(ctx, &g, f.Opt); err != nil {
		return err
	}
	l, err := NewLine(g, f.Opt.IncludePHI)
	if err != nil {
		return err
	}
	return f.spill.Add(ctx, l, emit)
}

func (f *lineFn) FinishBundle(ctx context.Context, emit func(string)) error {
	return f.spill.Flush(ctx, emit)
}

// Heatmaps writes the heatmaps of a group's top slices that the mode asks
// for into opt.Dir and sets their Heatmap names. Slices without maps keep
// the name they have.
func Heatmaps(ctx context.Context, g *Group, opt WriteOptions) error {
	g.Top = append([]Slice(nil), g.Top...) // the input element is not ours to change
	for i := range g.Top {
		sl := &g.Top[i]
		if sl.Map == nil {
			continue
		}
		own := report.WritesHeatmap(opt.Heatmaps, sl.Anomalous)
		if !own && !(opt.Heatmaps == report.HeatmapsAnomalous && g.Anomalous) {
			continue
		}
		r := sl.Result()
		sl.Heatmap = report.HeatmapName(r.Item)
		if own && opt.SkipWritten {
			continue
		}
		png, err := report.HeatmapPNG(r, opt.Calibration)
		if err != nil {
			return fmt.Errorf("study: %w", err)
		}
		if err := storage.WriteFileAtomic(ctx, storage.Join(opt.Dir, sl.Heatmap), png); err != nil {
			return fmt.Errorf("study: writing heatmap: %w", err)
		}
	}
	return nil
}

// finalFn merges the shards into studies.jsonl and writes the digest.
type finalFn struct{ Opt WriteOptions }

func (f *finalFn) ProcessElement(ctx context.Context, _ []byte, shards func(*string) bool) error {
	var uris []string
	var u string
	for shards(&u) {
		uris = append(uris, u)
	}
	sf := studyShards()
	uris, err := sf.Reduce(ctx, f.Opt.Dir, uris)
	if err != nil {
		return err
	}
	dg := newDigester(f.Opt.Score)
	if err := writeFile(ctx, f.Opt.Dir, func(emit func(*Line) error) error {
		return sf.Merge(ctx, uris, func(l *Line) error {
			if err := dg.add(l); err != nil {
				return err
			}
			return emit(l)
		})
	}); err != nil {
		return err
	}
	if err := shard.Remove(ctx, uris); err != nil {
		return err
	}
	return writeDigest(ctx, f.Opt.Dir, dg)
}

// writeDigest writes the digest of dg into dir.
func writeDigest(ctx context.Context, dir string, dg *digester) error {
	d, err := dg.digest()
	if err != nil {
		return err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("study: digest: %w", err)
	}
	return storage.WriteFileAtomic(ctx, storage.Join(dir, report.StudyDigestFile), b)
}

// WriteLines sorts lines as studies.jsonl lists them (studies, then
// series, by decreasing score) and writes the file into dir atomically
// (readers see the old file or the new one).
func WriteLines(ctx context.Context, dir string, all []Line) error {
	slices.SortFunc(all, func(a, b Line) int { return lineCmp(&a, &b) })
	var b bytes.Buffer
	for _, l := range all {
		b.WriteString(l.JSON)
		b.WriteByte('\n')
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(dir, File), b.Bytes()); err != nil {
		return fmt.Errorf("study: %w", err)
	}
	return nil
}

// writeFile writes studies.jsonl into the staging folder dir, streaming
// the lines fill emits (a run's outputs are committed together later).
func writeFile(ctx context.Context, dir string, fill func(emit func(*Line) error) error) error {
	uri := storage.Join(dir, File)
	w, err := storage.Create(ctx, uri)
	if err != nil {
		return fmt.Errorf("study: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	err = fill(func(l *Line) error {
		if _, err := bw.WriteString(l.JSON); err != nil {
			return fmt.Errorf("study: writing %s: %w", uri, err)
		}
		if err := bw.WriteByte('\n'); err != nil {
			return fmt.Errorf("study: writing %s: %w", uri, err)
		}
		return nil
	})
	if err == nil {
		if err = bw.Flush(); err != nil {
			err = fmt.Errorf("study: writing %s: %w", uri, err)
		}
	}
	if cerr := w.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("study: writing %s: %w", uri, cerr)
	}
	return err
}

// NewLine formats a group (with its heatmap names set) as a Line.
func NewLine(g Group, includePHI bool) (Line, error) {
	b, err := json.Marshal(NewRecord(g, includePHI))
	if err != nil {
		return Line{}, fmt.Errorf("study: %s: %w", g.Study, err)
	}
	return Line{Level: g.Level, Key: g.Study + "\x00" + g.Series, Score: g.Score, Label: g.Label, Anomalous: g.Anomalous, JSON: string(b)}, nil
}

// Digest computes the study summary and table rows of lines sorted by
// WriteLines: counts, and study- and series-level image metrics over the
// labelled groups.
func Digest(all []Line, scoreMode string) (*report.StudyDigest, error) {
	dg := newDigester(scoreMode)
	for i := range all {
		if err := dg.add(&all[i]); err != nil {
			return nil, err
		}
	}
	return dg.digest()
}

// digester folds lines, in studies.jsonl order, into the study digest. It
// keeps each labelled group's (score, label) for the metrics and the first
// report.MaxStudyRows rows, nothing else per line.
type digester struct {
	d    report.StudyDigest
	accs map[string]evaluate.ImageAccumulator
	cf   evaluate.ImageCombineFn
}

func newDigester(scoreMode string) *digester {
	if scoreMode == "" {
		scoreMode = "max"
	}
	return &digester{d: report.StudyDigest{Summary: report.StudySummary{Score: scoreMode}, Rows: []report.StudyRow{}},
		accs: map[string]evaluate.ImageAccumulator{}}
}

// add folds the next line.
func (dg *digester) add(l *Line) error {
	d := &dg.d
	switch l.Level {
	case LevelStudy:
		d.Summary.Studies++
		if l.Anomalous {
			d.Summary.Flagged++
		}
	case LevelSeries:
		d.Summary.Series++
		if l.Anomalous {
			d.Summary.FlaggedSeries++
		}
	}
	if l.Label == 0 || l.Label == 1 {
		a, err := dg.cf.AddInput(dg.accs[l.Level], evaluate.ImageResult{Label: l.Label, Score: l.Score})
		if err != nil {
			return fmt.Errorf("study: %w", err)
		}
		dg.accs[l.Level] = a
	}
	d.Total++
	if len(d.Rows) < report.MaxStudyRows || !d.MultiSlice {
		var r Record
		if err := json.Unmarshal([]byte(l.JSON), &r); err != nil {
			return fmt.Errorf("study: %w", err)
		}
		d.MultiSlice = d.MultiSlice || r.Slices > 1
		if len(d.Rows) < report.MaxStudyRows {
			d.Rows = append(d.Rows, r.Row())
		}
	}
	return nil
}

// digest returns the digest of the lines added.
func (dg *digester) digest() (*report.StudyDigest, error) {
	d := &dg.d
	for _, level := range []string{LevelStudy, LevelSeries} {
		a, ok := dg.accs[level]
		if !ok {
			continue
		}
		m, err := dg.cf.ExtractOutput(a)
		if err != nil {
			return nil, fmt.Errorf("study: %w", err)
		}
		rm := report.MetricsOf(m)
		if level == LevelStudy {
			d.Summary.Metrics = &rm
		} else {
			d.Summary.SeriesMetrics = &rm
		}
		if m.ImageAUROC == nil {
			d.Summary.Notes = append(d.Summary.Notes, fmt.Sprintf("%s AUROC undefined: %d of %d labelled %s groups are abnormal (it needs both classes)",
				level, m.Positives, m.Count, level))
		}
	}
	return d, nil
}
