package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/metrics"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// StageNames are the stages Stages times, in pipeline order.
var StageNames = []string{"decode", "preprocess", "inference", "post-processing", "writing"}

// Stages runs, in one goroutine, the functions the scoring pipeline calls
// for each image over files at batch size b: decode (read.ExpandFile),
// preprocess, inference (inference.Model.Score), post-processing (map and
// gray copies, resized mask, pixel-metric histogram) and writing (the
// scores.jsonl record, and the heatmap PNG of anomalous images into dir).
// It returns the seconds spent in each stage and the number of images.
func Stages(ctx context.Context, m *inference.Model, files []read.File, b int, dir string) ([]float64, int, error) {
	st := make([]float64, len(StageNames))
	tick := time.Now()
	lap := func(i int) {
		now := time.Now()
		st[i] += now.Sub(tick).Seconds()
		tick = now
	}
	man := m.Bundle.Manifest
	S := m.Size()
	hist, _ := metrics.NewHistogram(metrics.DefaultHistogramBits)
	n := 0
	var pend []read.Decoded
	var tensors [][]float32
	flush := func() error {
		if len(pend) == 0 {
			return nil
		}
		amaps, scores, err := m.Score(tensors)
		if err != nil {
			return err
		}
		lap(2)
		results := make([]score.Result, len(pend))
		for i, d := range pend {
			r := score.Result{Item: d.Item, Score: float64(scores[i]), Anomalous: float64(scores[i]) > man.Scores.Threshold,
				Size: S, Rows: d.Image.Rows, Cols: d.Image.Cols}
			r.Map = append([]float32(nil), amaps[i]...)
			r.Gray = make([]uint8, S*S)
			for j := range r.Gray {
				v := min(max(tensors[i][j], 0), 1)
				r.Gray[j] = uint8(v*255 + 0.5)
			}
			if d.Mask != nil {
				mm := metrics.Map{Rows: S, Cols: S, Scores: append([]float32(nil), amaps[i]...),
					Mask: score.ResizeNearest(d.Mask, d.Image.Rows, d.Image.Cols, S, S)}
				if err := hist.Add(mm); err != nil {
					return err
				}
			}
			results[i] = r
		}
		lap(3)
		for _, r := range results {
			heat := ""
			if r.Anomalous {
				png, err := report.OverlayPNG(r, man.Scores.PixelMin, man.Scores.PixelMax)
				if err != nil {
					return err
				}
				heat = report.HeatmapName(r.Item)
				if err := storage.WriteFileAtomic(ctx, filepath.Join(dir, heat), png); err != nil {
					return err
				}
			}
			if _, err := json.Marshal(report.NewRecord(r, heat, false)); err != nil {
				return err
			}
		}
		lap(4)
		n += len(pend)
		pend, tensors = pend[:0], tensors[:0]
		return nil
	}
	for _, f := range files {
		var decoded []read.Decoded
		var ferr error
		read.ExpandFile(ctx, f, read.Options{}, func(d read.Decoded) { decoded = append(decoded, d) },
			func(fl read.Failure) { ferr = fmt.Errorf("%s: %s", fl.URI, fl.Error) })
		if ferr != nil {
			return nil, 0, ferr
		}
		lap(0)
		for _, d := range decoded {
			t, err := m.Preprocess(d.Image)
			if err != nil {
				return nil, 0, err
			}
			lap(1)
			pend, tensors = append(pend, d), append(tensors, t)
			if len(pend) >= b {
				if err := flush(); err != nil {
					return nil, 0, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	os.RemoveAll(dir)
	return st, n, nil
}
