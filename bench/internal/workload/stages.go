package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// StageNames are the stages Stages times, in pipeline order.
var StageNames = []string{"decode", "preprocess", "inference", "post-processing", "writing"}

// Stages runs, in one goroutine, the functions the scoring pipeline calls
// for each image over files at batch size b: decode (a read.Expander),
// preprocess, inference (inference.Model.Score), post-processing
// (score.NewResult: map and gray copies, the view at the image's size, the
// resized mask; the pixel metrics' evaluate.PixelCombineFn.AddInput) and
// writing (report.WriteImages: the heatmap and predicted mask of anomalous
// images into dir, and the scores.jsonl record). These are the functions
// the pipeline calls, at multiad score's defaults.
// It returns the seconds spent in each stage and the number of images.
//
// With threadCPU, each stage is timed by the CPU time of the OS thread the
// loop runs on (locked to it for the call) instead of the wall clock: for
// a one-thread session, whose ONNX Runtime work runs on the calling
// thread, that is each stage's single-thread cost, which the load of other
// processes on a shared machine does not inflate.
func Stages(ctx context.Context, m *inference.Model, files []read.File, b int, dir string, threadCPU bool) ([]float64, int, error) {
	start := time.Now()
	clock := func() time.Duration { return time.Since(start) } // monotonic
	if threadCPU {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		clock = func() time.Duration {
			var ts unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
				panic(fmt.Sprintf("workload: thread CPU clock: %v", err))
			}
			return time.Duration(ts.Nano())
		}
	}
	st := make([]float64, len(StageNames))
	tick := clock()
	lap := func(i int) {
		now := clock()
		st[i] += (now - tick).Seconds()
		tick = now
	}
	man := m.Bundle.Manifest
	// The score transform's, the pixel metrics' and the report's own
	// functions, at multiad score's defaults (--heatmaps anomalous,
	// --masks): the work the pipeline does per image, without Beam.
	scoreOpt := score.Options{KeepMaps: true}
	pixels := &evaluate.PixelCombineFn{}
	acc, err := pixels.CreateAccumulator()
	if err != nil {
		return nil, 0, err
	}
	reportOpt := report.Options{Dir: dir, Heatmaps: report.HeatmapsAnomalous, Calibration: man.Scores, Masks: true}
	n := 0
	var pend []read.Decoded
	var tensors [][]float32
	var views [][]uint8
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
			r, pix := score.NewResult(m, d, tensors[i], views[i], amaps[i], scores[i], scoreOpt)
			if pix != nil {
				if acc, err = pixels.AddInput(acc, *pix); err != nil {
					return err
				}
			}
			results[i] = r
		}
		lap(3)
		for _, r := range results {
			rec, err := report.WriteImages(ctx, r, reportOpt)
			if err != nil {
				return err
			}
			if _, err := json.Marshal(rec); err != nil {
				return err
			}
		}
		lap(4)
		n += len(pend)
		pend, tensors, views = pend[:0], tensors[:0], views[:0]
		return nil
	}
	x := read.NewExpander(read.Options{})
	for _, f := range files {
		var decoded []read.Decoded
		var ferr error
		x.Expand(ctx, f, func(d read.Decoded) { decoded = append(decoded, d) },
			func(fl read.Failure) { ferr = fmt.Errorf("%s: %s", fl.URI, fl.Error) })
		if ferr != nil {
			return nil, 0, ferr
		}
		lap(0)
		for _, d := range decoded {
			t, v, err := score.Preprocess(m, d.Image, scoreOpt)
			if err != nil {
				return nil, 0, err
			}
			lap(1)
			pend, tensors, views = append(pend, d), append(tensors, t), append(views, v)
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
