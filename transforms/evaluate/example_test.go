package evaluate_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/transforms/evaluate"
)

// format prints the overall metrics of a report.
func format(r evaluate.Report) string {
	m := r.Overall
	return fmt.Sprintf("%d images, %d anomalous: image AUROC %.3f, AP %.3f; pixel AUROC %.3f",
		m.Count, m.Positives, *m.ImageAUROC, *m.ImageAP, *m.PixelAUROC)
}

func init() { register.Function1x1[evaluate.Report, string](format) }

// Evaluate computes image metrics from labelled scores and pixel metrics
// from anomaly maps with ground-truth masks, overall and per group.
func ExampleEvaluate() {
	tmp, _ := os.MkdirTemp("", "evaluate-example")
	defer os.RemoveAll(tmp)

	p, s := beam.NewPipelineWithRoot()
	images := beam.CreateList(s, []evaluate.ImageResult{
		{Label: 0, Score: 0.1}, {Label: 0, Score: 0.4}, {Label: 1, Score: 0.35}, {Label: 1, Score: 0.8},
	})
	pixels := beam.CreateList(s, []evaluate.PixelResult{
		{Rows: 2, Cols: 2, Map: []float32{0.1, 0.9, 0.2, 0.8}, Mask: []uint8{0, 1, 0, 1}},
	})
	report := evaluate.Evaluate(s, images, pixels)
	textio.Write(s, filepath.Join(tmp, "report.txt"), beam.ParDo(s, format, report))
	if err := beamx.Run(context.Background(), p); err != nil {
		log.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(tmp, "report.txt"))
	fmt.Print(string(b))
	// Output: 4 images, 2 anomalous: image AUROC 0.750, AP 0.833; pixel AUROC 1.000
}
