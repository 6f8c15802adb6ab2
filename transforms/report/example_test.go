package report_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/inference/inferencetest"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// Write writes scores.jsonl, failures.jsonl and the heatmaps into a staging
// folder; after the pipeline, Finish adds summary.json and report.html and
// Commit moves everything into the output folder at once.
func ExampleWrite() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "report-example")
	defer os.RemoveAll(tmp)
	bundle := filepath.Join(tmp, "bundle")
	if err := inferencetest.WriteBundle(bundle, 32); err != nil {
		log.Fatal(err)
	}
	dir, err := shared.Path("data", "industrial", "magnetic_tile", "test", "crack")
	if err != nil {
		log.Fatal(err)
	}
	stage, out := filepath.Join(tmp, "out", ".staging"), filepath.Join(tmp, "out")

	p, s := beam.NewPipelineWithRoot()
	in := read.ReadImages(s, filepath.Join(dir, "exp1_num_2[4-7]*.jpg"), read.Options{})
	results, pix, failed := score.Score(s, in.Images, score.Options{Bundle: bundle, KeepMaps: true})
	images := beam.CreateList(s, []evaluate.ImageResult{}) // no labels here
	rep := evaluate.Evaluate(s, images, pix)
	report.Write(s, results, beam.Flatten(s, in.Failures, failed), in.Inputs, rep,
		report.Options{Dir: stage, Heatmaps: report.HeatmapsAll})
	if err := beamx.Run(ctx, p); err != nil {
		log.Fatal(err)
	}
	sum, err := report.Finish(ctx, stage, report.RunInfo{Input: dir, Output: out, Threshold: 0.5, Heatmaps: report.HeatmapsAll})
	if err != nil {
		log.Fatal(err)
	}
	if err := report.Commit(ctx, stage, out); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("inputs %d, scored %d, failed %d\n", sum.Inputs, sum.Scored, sum.Failed)
	heatmaps, _ := filepath.Glob(filepath.Join(out, report.HeatmapDir, "*.png"))
	fmt.Printf("%d heatmaps\n", len(heatmaps))
	for _, f := range []string{report.ScoresFile, report.FailuresFile, report.SummaryFile, report.ReportFile} {
		_, err := os.Stat(filepath.Join(out, f))
		fmt.Println(f, err == nil)
	}
	// Output:
	// inputs 3, scored 3, failed 0
	// 3 heatmaps
	// scores.jsonl true
	// failures.jsonl true
	// summary.json true
	// report.html true
}
