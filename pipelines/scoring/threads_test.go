package scoring

import (
	"flag"
	"io"
	"testing"

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
