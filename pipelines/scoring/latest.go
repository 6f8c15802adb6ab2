package scoring

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/study"
)

// updateLatest merges a committed incremental run into OUT/latest/: every
// input's most recent scores (scores.jsonl) and failures (failures.jsonl),
// studies.jsonl recomputed from those scores, summary.json and report.html
// over all of them. A file scored or failed by this run replaces all of its
// earlier rows. Heatmap paths point into the runs' folders. Each file is
// written atomically, summary.json last; a crash in between leaves a
// latest/ that the next run's merge repairs (it merges by file).
func updateLatest(ctx context.Context, opt Options, info *modelInfo, run *Summary) error {
	runDir := storage.Join(opt.Output, RunsDir, opt.run)
	latest := storage.Join(opt.Output, LatestDir)

	newScores, err := readLines[report.Record](ctx, storage.Join(runDir, report.ScoresFile))
	if err != nil {
		return err
	}
	newFails, err := readLines[report.FailureRecord](ctx, storage.Join(runDir, report.FailuresFile))
	if err != nil {
		return err
	}
	oldScores, err := readLines[report.Record](ctx, storage.Join(latest, report.ScoresFile))
	if err != nil {
		return err
	}
	oldFails, err := readLines[report.FailureRecord](ctx, storage.Join(latest, report.FailuresFile))
	if err != nil {
		return err
	}
	redone := map[string]bool{}
	for _, r := range newScores {
		redone[r.URI] = true
	}
	for _, f := range newFails {
		redone[f.URI] = true
	}
	var scores []report.Record
	for _, r := range oldScores {
		if !redone[r.URI] {
			scores = append(scores, r)
		}
	}
	for _, r := range newScores {
		if r.Heatmap != "" {
			r.Heatmap = path.Join("..", RunsDir, opt.run, r.Heatmap)
		}
		scores = append(scores, r)
	}
	var fails []report.FailureRecord
	for _, f := range oldFails {
		if !redone[f.URI] {
			fails = append(fails, f)
		}
	}
	fails = append(fails, newFails...)
	sort.SliceStable(scores, func(i, j int) bool { return recordKey(scores[i]) < recordKey(scores[j]) })
	sort.SliceStable(fails, func(i, j int) bool { return failureKey(fails[i]) < failureKey(fails[j]) })

	if err := writeJSONLines(ctx, storage.Join(latest, report.ScoresFile), scores); err != nil {
		return err
	}
	if err := writeJSONLines(ctx, storage.Join(latest, report.FailuresFile), fails); err != nil {
		return err
	}

	// Studies, recomputed from every latest score.
	k := opt.parsed.studyK
	slices := make([]study.Slice, len(scores))
	for i, r := range scores {
		slices[i] = sliceOf(r)
	}
	var lines []study.Line
	for _, g := range study.Aggregate(slices, &study.CombineFn{K: k, Threshold: info.threshold}) {
		l, err := study.NewLine(g, true) // the records' meta is already filtered
		if err != nil {
			return err
		}
		lines = append(lines, l)
	}
	if err := study.WriteLines(ctx, latest, lines); err != nil {
		return err
	}
	studies, err := study.Digest(lines, opt.StudyScore)
	if err != nil {
		return err
	}

	// Image metrics over every labelled latest score.
	var cf evaluate.ImageCombineFn
	acc := cf.CreateAccumulator()
	files := map[string]bool{}
	d := &report.Digest{Scored: len(scores), Failed: len(fails), Studies: studies}
	for _, r := range scores {
		files[r.URI] = true
		l := -1
		if r.Label != nil {
			l = *r.Label
			if acc, err = cf.AddInput(acc, evaluate.ImageResult{Label: l, Score: r.Score}); err != nil {
				return fmt.Errorf("score: latest: %w", err)
			}
		}
		d.Points = append(d.Points, report.Point{Score: r.Score, Label: l})
	}
	for _, f := range fails {
		files[f.URI] = true
	}
	sum := &report.Summary{Input: opt.Input, Output: latest, Inputs: len(files), Scored: len(scores), Failed: len(fails),
		Threshold: info.threshold, Model: info.properties, Heatmaps: run.Heatmaps, GroupBy: opt.GroupBy,
		Started: run.Started, Studies: &studies.Summary, Incremental: run.Incremental}
	if acc.Pos != nil || acc.Neg != nil {
		m, err := cf.ExtractOutput(acc)
		if err != nil {
			return fmt.Errorf("score: latest: %w", err)
		}
		rm := report.MetricsOf(m)
		sum.Metrics = &rm
	}
	d.Gallery = gallery(ctx, latest, scores, opt.Gallery)
	html, err := report.HTML(sum, d)
	if err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(latest, report.ReportFile), html); err != nil {
		return fmt.Errorf("score: latest: %w", err)
	}
	sj, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(latest, report.SummaryFile), append(sj, '\n')); err != nil {
		return fmt.Errorf("score: latest: %w", err)
	}
	return nil
}

// sliceOf makes the study.Slice of a scores.jsonl record.
func sliceOf(r report.Record) study.Slice {
	s := study.Slice{URI: r.URI, Index: -1, Score: r.Score, Anomalous: r.Anomalous, Label: -1,
		StudyLabel: r.Meta[study.LabelColumn], Study: r.Study, Series: r.Series, Meta: r.Meta, Heatmap: r.Heatmap}
	switch {
	case r.Slice != nil:
		s.Index, s.IndexKind = *r.Slice, "slice"
	case r.Frame != nil:
		s.Index, s.IndexKind = *r.Frame, "frame"
	}
	if r.Label != nil {
		s.Label = *r.Label
	}
	return s
}

// gallery returns the n top-scoring latest records with their heatmaps
// (read from the runs' folders; a missing one is left out).
func gallery(ctx context.Context, latest string, scores []report.Record, n int) []report.GalleryEntry {
	if n <= 0 {
		n = 12
	}
	top := append([]report.Record(nil), scores...)
	sort.SliceStable(top, func(i, j int) bool { return top[i].Score > top[j].Score })
	var out []report.GalleryEntry
	for _, r := range top[:min(n, len(top))] {
		g := report.GalleryEntry{Record: r}
		g.Record.Meta = nil
		if r.Heatmap != "" {
			if b, err := storage.ReadFile(ctx, storage.Join(latest, r.Heatmap), 16<<20); err == nil {
				g.PNG = b
			}
		}
		out = append(out, g)
	}
	return out
}

func indexKey(slice, frame *int) int {
	switch {
	case slice != nil:
		return *slice
	case frame != nil:
		return *frame
	}
	return -1
}

func recordKey(r report.Record) string {
	return fmt.Sprintf("%s\x00%012d", r.URI, indexKey(r.Slice, r.Frame)+1)
}

func failureKey(f report.FailureRecord) string {
	return fmt.Sprintf("%s\x00%012d", f.URI, indexKey(f.Slice, f.Frame)+1)
}

// readLines reads a JSON-lines file; a missing file has no lines.
func readLines[T any](ctx context.Context, uri string) ([]T, error) {
	b, err := storage.ReadFile(ctx, uri, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("score: %w", err)
	}
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("score: %s line %d: %w", uri, n, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("score: %s: %w", uri, err)
	}
	return out, nil
}

// writeJSONLines writes values as JSON lines, atomically.
func writeJSONLines[T any](ctx context.Context, uri string, vals []T) error {
	var b bytes.Buffer
	for _, v := range vals {
		j, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("score: %s: %w", uri, err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	if err := storage.WriteFileAtomic(ctx, uri, b.Bytes()); err != nil {
		return fmt.Errorf("score: %w", err)
	}
	return nil
}
