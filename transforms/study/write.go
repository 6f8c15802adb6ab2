package study

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

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
	register.DoFn2x2[context.Context, Group, Line, error](&lineFn{})
	register.DoFn3x1[context.Context, []byte, func(*Line) bool, error](&finalFn{})
	register.Iter1[Line]()
}

// Write writes studies.jsonl, the top slices' heatmaps and the study digest
// (report.StudyDigestFile, read by report.Finish) into opt.Dir, from a
// PCollection<Group>.
func Write(s beam.Scope, groups beam.PCollection, opt WriteOptions) {
	s = s.Scope("study.Write")
	lines := beam.ParDo(s, &lineFn{Opt: opt}, groups)
	beam.ParDo0(s, &finalFn{Opt: opt}, beam.Impulse(s), beam.SideInput{Input: lines})
}

// lineFn writes a group's top slice heatmaps and formats its line.
type lineFn struct{ Opt WriteOptions }

func (f *lineFn) ProcessElement(ctx context.Context, g Group) (Line, error) {
	if err := Heatmaps(ctx, &g, f.Opt); err != nil {
		return Line{}, err
	}
	return NewLine(g, f.Opt.IncludePHI)
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

// finalFn writes studies.jsonl and the study digest.
type finalFn struct{ Opt WriteOptions }

func (f *finalFn) ProcessElement(ctx context.Context, _ []byte, lines func(*Line) bool) error {
	var all []Line
	var l Line
	for lines(&l) {
		all = append(all, l)
	}
	if err := WriteLines(ctx, f.Opt.Dir, all); err != nil {
		return err
	}
	d, err := Digest(all, f.Opt.Score)
	if err != nil {
		return err
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("study: digest: %w", err)
	}
	return storage.WriteFileAtomic(ctx, storage.Join(f.Opt.Dir, report.StudyDigestFile), b)
}

// WriteLines sorts lines as studies.jsonl lists them (studies, then
// series, by decreasing score) and writes the file into dir.
func WriteLines(ctx context.Context, dir string, all []Line) error {
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.Level != b.Level {
			return a.Level == LevelStudy
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Key < b.Key
	})
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
	if scoreMode == "" {
		scoreMode = "max"
	}
	d := &report.StudyDigest{Summary: report.StudySummary{Score: scoreMode}, Rows: []report.StudyRow{}}
	accs := map[string]evaluate.ImageAccumulator{}
	var cf evaluate.ImageCombineFn
	for _, l := range all {
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
			a, err := cf.AddInput(accs[l.Level], evaluate.ImageResult{Label: l.Label, Score: l.Score})
			if err != nil {
				return nil, fmt.Errorf("study: %w", err)
			}
			accs[l.Level] = a
		}
		var r Record
		if err := json.Unmarshal([]byte(l.JSON), &r); err != nil {
			return nil, fmt.Errorf("study: %w", err)
		}
		d.Rows = append(d.Rows, r.Row())
	}
	for _, level := range []string{LevelStudy, LevelSeries} {
		a, ok := accs[level]
		if !ok {
			continue
		}
		m, err := cf.ExtractOutput(a)
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
