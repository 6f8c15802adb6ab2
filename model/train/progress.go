package train

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Printer returns a progress callback that writes to w: a one-line bar
// redrawn in place when w is a terminal, else a plain line at most every
// interval.
func Printer(w io.Writer, interval time.Duration) func(Progress) {
	tty := isTerminal(w)
	var last time.Time
	return func(p Progress) {
		if p.Phase == "validate" {
			if tty {
				fmt.Fprintln(w)
			}
			fmt.Fprintln(w, "train: "+Line(p, 0))
			return
		}
		if tty {
			fmt.Fprintf(w, "\r%s", Line(p, 30))
			return
		}
		if p.Step == p.Steps || time.Since(last) >= interval {
			last = time.Now()
			fmt.Fprintln(w, Line(p, 0))
		}
	}
}

// Line formats one progress line, with a bar of the given width (0: none).
func Line(p Progress, bar int) string {
	if p.Phase == "validate" {
		return fmt.Sprintf("calibrating on held-out normals after %d steps", p.Step)
	}
	var b strings.Builder
	if bar > 0 && p.Steps > 0 {
		n := bar * p.Step / p.Steps
		fmt.Fprintf(&b, "[%s%s] ", strings.Repeat("=", n), strings.Repeat(" ", bar-n))
	}
	fmt.Fprintf(&b, "epoch %d/%d step %d/%d kd %.4f", p.Epoch, p.Epochs, p.Step, p.Steps, p.KDLoss)
	if p.DiscLoss != 0 || p.AdvLoss != 0 {
		fmt.Fprintf(&b, " adv %.3f disc %.3f", p.AdvLoss, p.DiscLoss)
	}
	fmt.Fprintf(&b, " %.1f img/s elapsed %s eta %s", p.ImagesPerSec, p.Elapsed.Round(time.Second), p.ETA.Round(time.Second))
	return b.String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
