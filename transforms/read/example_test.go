package read_test

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
	"github.com/multiad/multiad/transforms/read"
)

// describe formats a decoded image.
func describe(d read.Decoded) string {
	return fmt.Sprintf("%s %dx%d label %d", filepath.Base(d.Item.URI), d.Image.Rows, d.Image.Cols, d.Item.Label)
}

func init() { register.Function1x1[read.Decoded, string](describe) }

// ReadImages lists an input (here a glob of three magnetic tile images;
// also a folder, a manifest CSV or an MVTec layout, local or gs://) and
// decodes every image, slice and frame in it. Files that cannot be read
// come out in Failures, never dropped.
func ExampleReadImages() {
	dir, err := shared.Path("data", "industrial", "magnetic_tile", "test", "crack")
	if err != nil {
		log.Fatal(err)
	}
	tmp, _ := os.MkdirTemp("", "read-example")
	defer os.RemoveAll(tmp)

	p, s := beam.NewPipelineWithRoot()
	in := read.ReadImages(s, filepath.Join(dir, "exp1_num_2[4-7]*.jpg"), read.Options{})
	textio.Write(s, filepath.Join(tmp, "images.txt"), beam.ParDo(s, describe, in.Images))
	if err := beamx.Run(context.Background(), p); err != nil {
		log.Fatal(err)
	}

	b, _ := os.ReadFile(filepath.Join(tmp, "images.txt"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	sort.Strings(lines)
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// exp1_num_249594.jpg 264x219 label -1
	// exp1_num_265613.jpg 381x253 label -1
	// exp1_num_276355.jpg 389x236 label -1
}
