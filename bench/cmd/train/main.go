// Command train measures training speed at the default configuration
// (train.DefaultConfig at the size `multiad train` uses by default) in
// image-steps/s, against the FLOP floor: the student's FLOPs per training
// image (3 × student.Config.ForwardFLOPs: a forward and a backward pass
// that costs about twice the forward; the small discriminator is not
// counted) over the CPU's measured sgemm peak. Teacher features are
// random tensors of the right shapes (training speed does not depend on
// their values; computing them is the teacher's inference, measured by the
// scoring benchmark).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "train:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	size := fs.Int("size", train.DefaultSize, "image size (multiad train's default)")
	runs := fs.Int("runs", 5, "timed steps")
	warmup := fs.Int("warmup", 2, "untimed first steps (graph compilation)")
	width := fs.Int("width", 0, "student width (0: the default)")
	peakN := fs.Int("peak-n", 2048, "matrix side of the sgemm peak measurement")
	lossesOut := fs.String("losses", "", "write each step's losses (step, KD, adversarial, discriminator) to this TSV file")
	lossesWant := fs.String("want-losses", "", "compare each step's losses with this TSV file (written by -losses, for example by another build) and fail beyond -loss-tol")
	lossTol := fs.Float64("loss-tol", 1e-4, "largest absolute loss difference -want-losses accepts")
	nudge := fs.Bool("nudge", false, "add one float32 ULP to the first pixel of the first image: a change the size of a rounding error, to see how far training carries one (compare with -want-losses)")
	hard := fs.Float64("hard-mining", -1, "the KD loss's hard-mining factor (train.Config.HardMining; 0: off; negative: the default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := train.DefaultConfig(*size)
	if *width > 0 {
		cfg.Student.Width = *width
	}
	cfg.Epochs, cfg.MaxSteps = 0, *warmup+*runs // the steps, whatever the epochs
	if *hard >= 0 {
		cfg.HardMining = *hard
	}
	cfg.ProgressEvery = 0
	S := cfg.Size
	rng := rand.New(rand.NewPCG(3, 4))
	sample := func() train.Sample {
		s := train.Sample{Image: make([]float32, 3*S*S)}
		for i := range s.Image {
			s.Image[i] = rng.Float32()
		}
		for k, st := range student.Strides {
			h := S / st
			s.Feats[k] = make([]float32, cfg.Student.Channels[k]*h*h)
			for i := range s.Feats[k] {
				s.Feats[k][i] = float32(rng.NormFloat64())
			}
		}
		return s
	}
	var data train.Dataset
	for i := 0; i < 2*cfg.BatchSize; i++ {
		data.Train = append(data.Train, sample())
	}
	data.Val = data.Train[:2]
	if *nudge {
		p := &data.Train[0].Image[0]
		*p = math.Nextafter32(*p, 2)
	}

	var stepSecs []float64
	var losses []stepLosses
	last := time.Now()
	lastStep := 0
	start := time.Now()
	benchutil.Progress("train", "default config at %d², batch %d: %d warm-up + %d timed steps", S, cfg.BatchSize, *warmup, *runs)
	_, err := train.Train(cfg, data, func(p train.Progress) {
		if p.Phase != "" && p.Phase != "train" || p.Step == lastStep {
			return
		}
		losses = append(losses, stepLosses{p.Step, p.KDLoss, p.AdvLoss, p.DiscLoss})
		now := time.Now()
		if p.Step > *warmup && p.Step == lastStep+1 {
			stepSecs = append(stepSecs, now.Sub(last).Seconds())
		}
		benchutil.Progress("train", "step %d/%d %.2f s", p.Step, cfg.MaxSteps, now.Sub(last).Seconds())
		last, lastStep = now, p.Step
	})
	if err != nil {
		return err
	}
	total := time.Since(start)
	if len(stepSecs) == 0 {
		return fmt.Errorf("no timed steps (progress reported %d)", lastStep)
	}
	if *lossesOut != "" {
		if err := writeLosses(*lossesOut, losses); err != nil {
			return err
		}
	}
	var lossDiff float64
	if *lossesWant != "" {
		if lossDiff, err = compareLosses(*lossesWant, losses, *lossTol); err != nil {
			return err
		}
		benchutil.Progress("train", "losses of %d steps agree with %s: largest difference %.3g (tolerance %g)", len(losses), *lossesWant, lossDiff, *lossTol)
	}
	benchutil.Progress("train", "sgemm peak: ONNX Runtime MatMul %d², 2 threads", *peakN)
	peak, err := benchutil.PeakGFLOPS(*peakN, 2, 5)
	if err != nil {
		return err
	}
	step := benchutil.Summarize(stepSecs)
	ips := step.Rate(float64(cfg.BatchSize))
	perImage := 3 * float64(cfg.Student.ForwardFLOPs(S))
	achieved := ips.Median * perImage / 1e9
	floor := peak.Median * 1e9 / perImage

	fig := &benchutil.Figures{Name: "train"}
	fmt.Fprintf(stdout, "### Training speed (train.DefaultConfig(%d): width %d, depth %d, batch %d, adversarial weight %g; pure-Go GoMLX backend)\n\n",
		S, cfg.Student.Width, cfg.Student.Depth, cfg.BatchSize, cfg.AdvWeight)
	t := benchutil.Table{Header: []string{"figure", "value"}}
	t.Add("seconds per step", step.Format("%.2f"))
	t.Add("image-steps/s", ips.Format("%.2f"))
	t.Add("GFLOP per image-step (3 × student forward)", fmt.Sprintf("%.3f", perImage/1e9))
	t.Add("achieved GFLOP/s", fmt.Sprintf("%.1f", achieved))
	t.Add(fmt.Sprintf("sgemm peak (ONNX Runtime MatMul %d², 2 threads) GFLOP/s", *peakN), peak.Format("%.1f"))
	t.Add("floor image-steps/s (peak ÷ FLOPs per image-step)", fmt.Sprintf("%.1f", floor))
	t.Add("fraction of peak", fmt.Sprintf("%.0f%%", 100*achieved/peak.Median))
	t.Add("whole run incl. graph compilation and calibration", fmt.Sprintf("%.1f s", total.Seconds()))
	t.Write(stdout)
	fmt.Fprintf(stdout, "Reading: training reaches %.0f%% of the sgemm peak (%.1f of %.1f GFLOP/s). It runs on GoMLX's pure-Go backend: "+
		"nn.Conv2D computes a 3×3 same-size convolution as nine products of shifted maps and the others as im2col products, "+
		"ops run one at a time (train.NewBackend sets ops_sequential after a deadlock with parallel ops), and at %d² with batch %d "+
		"the products are thin (16–128 output channels), so the sums of the window products, the transposes of their outputs, "+
		"buffer zeroing, the squeeze-and-excitation blocks and the discriminator's extra passes weigh as much as the products. "+
		"The FLOP count is a lower bound on the work (3× the student's forward convolutions and dense layers), so the real "+
		"fraction is somewhat higher. Where the time goes: the readings below.\n\n",
		100*achieved/peak.Median, achieved, peak.Median, S, cfg.BatchSize)
	fig.Set("seconds_per_step", step.Median)
	fig.Set("image_steps_per_s", ips.Median)
	fig.Set("gflop_per_image_step", perImage/1e9)
	fig.Set("achieved_gflops", achieved)
	fig.Set("peak_gflops", peak.Median)
	fig.Set("floor_image_steps_per_s", floor)
	fig.Set("fraction_of_peak", achieved/peak.Median)
	if *lossesWant != "" {
		fig.Set("max_loss_difference", lossDiff)
	}
	fig.Write(stdout)
	fmt.Fprintln(stdout)
	return nil
}
