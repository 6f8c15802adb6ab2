package score_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/inference/inferencetest"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

// verdict formats a scored image.
func verdict(r score.Result) string {
	return fmt.Sprintf("%s scored at %dx%d (map %d values)", filepath.Base(r.Item.URI), r.Size, r.Size, len(r.Map))
}

func init() { register.Function1x1[score.Result, string](verdict) }

// Score scores decoded images with a model bundle (a directory or .tar,
// local or gs://; here the tiny test bundle). Each worker process loads the
// model once; images are batched.
func ExampleScore() {
	tmp, _ := os.MkdirTemp("", "score-example")
	defer os.RemoveAll(tmp)
	bundle := filepath.Join(tmp, "bundle")
	if err := inferencetest.WriteBundle(bundle, 32); err != nil {
		log.Fatal(err)
	}
	dir, err := shared.Path("data", "industrial", "magnetic_tile", "test", "crack")
	if err != nil {
		log.Fatal(err)
	}

	p, s := beam.NewPipelineWithRoot()
	in := read.ReadImages(s, filepath.Join(dir, "exp1_num_2[4-7]*.jpg"), read.Options{})
	results, _, failures := score.Score(s, in.Images, score.Options{Bundle: bundle, BatchSize: 2, KeepMaps: true})
	textio.Write(s, filepath.Join(tmp, "results.txt"), beam.ParDo(s, verdict, results))
	_ = failures // a PCollection<read.Failure>: images the model could not score
	if err := beamx.Run(context.Background(), p); err != nil {
		log.Fatal(err)
	}

	b, _ := os.ReadFile(filepath.Join(tmp, "results.txt"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// exp1_num_249594.jpg scored at 32x32 (map 1024 values)
	// exp1_num_265613.jpg scored at 32x32 (map 1024 values)
	// exp1_num_276355.jpg scored at 32x32 (map 1024 values)
}
