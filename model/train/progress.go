package train

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Printer returns a progress callback that writes training progress to w:
// a one-line bar redrawn in place when w is a terminal, else a line
// prefixed "train: " at the first call, at the last step and at most every
// interval in between. Validation progress is not printed.
func Printer(w io.Writer, interval time.Duration) func(Progress) {
	tty := isTerminal(w)
	var last time.Time
	return func(p Progress) {
		if p.Phase == "validate" {
			return
		}
		done := p.Step >= p.Steps
		if !tty && !done && time.Since(last) < interval {
			return
		}
		last = time.Now()
		line := Line(p)
		if tty {
			fmt.Fprintf(w, "\r%s", line)
			if done {
				fmt.Fprintln(w)
			}
		} else {
			fmt.Fprintln(w, "train: "+line)
		}
	}
}

// Line formats one training progress line: a 24-character bar, the share
// done, epoch, step, the losses, the rate and the time left.
func Line(p Progress) string {
	frac := float64(p.Step) / float64(max(p.Steps, 1))
	const width = 24
	n := int(frac * width)
	bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
	return fmt.Sprintf("[%s] %3.0f%% epoch %d/%d step %d/%d kd %.4f adv %.3f disc %.3f %.1f img/s ETA %s",
		bar, 100*frac, p.Epoch, p.Epochs, p.Step, p.Steps, p.KDLoss, p.AdvLoss, p.DiscLoss, p.ImagesPerSec, p.ETA.Round(time.Second))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
