package scoring

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners"

	"github.com/multiad/multiad/transforms/score"
)

// TestThreadsFlag: --threads takes a count or auto, nothing else; the
// defaults are auto and DefaultInFlight batches in flight.
func TestThreadsFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
		ok   bool
	}{{nil, score.ThreadsAuto, true}, {[]string{"--threads", "0"}, 0, true}, {[]string{"--threads", "3"}, 3, true}, {[]string{"--threads", "auto"}, score.ThreadsAuto, true},
		{[]string{"--threads", "-1"}, 0, false}, {[]string{"--threads", "two"}, 0, false}} {
		fs := flag.NewFlagSet("score", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o := RegisterFlags(fs)
		err := fs.Parse(c.args)
		if (err == nil) != c.ok || (c.ok && o.Threads != c.want) {
			t.Errorf("%v: threads %d, err %v; want %d, ok %v", c.args, o.Threads, err, c.want, c.ok)
		}
		if c.ok && o.InFlight != DefaultInFlight {
			t.Errorf("%v: in flight %d, want the default %d", c.args, o.InFlight, DefaultInFlight)
		}
	}
}

// TestReshuffleByRunner: the pipeline reshuffles the listed files for a
// distributed runner and reads them where they are listed on a local one
// (LocalRunner), where the reshuffle would only buffer the whole listing.
func TestReshuffleByRunner(t *testing.T) {
	bundleDir := testBundle(t)
	saved := *runners.Runner
	defer func() { *runners.Runner = saved }()
	for _, c := range []struct {
		runner string
		local  bool
	}{{"", true}, {"prism", true}, {"Direct", true}, {"dataflow", false}, {"DataflowRunner", false}, {"flink", false}} {
		if got := LocalRunner(c.runner); got != c.local {
			t.Errorf("LocalRunner(%q) = %v, want %v", c.runner, got, c.local)
		}
		*runners.Runner = c.runner
		p, s := beam.NewPipelineWithRoot()
		if err := Build(s, Options{Model: bundleDir, Input: t.TempDir(), Output: t.TempDir(), BatchSize: 8}); err != nil {
			t.Fatal(err)
		}
		edges, _, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		reshuffles := 0
		for _, e := range edges {
			if strings.Contains(e.Name(), "Reshuffle") {
				reshuffles++
			}
		}
		if (reshuffles > 0) == c.local {
			t.Errorf("runner %q: %d Reshuffle steps, want some only for a distributed runner", c.runner, reshuffles)
		}
	}
}
