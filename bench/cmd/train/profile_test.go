package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/google/pprof/profile"

	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

// TestProfileTrainStep shows where a training step's time goes (issue 20
// item 6): it trains the default student (train.DefaultConfig, batch 8,
// random images and teacher features) for BENCH_TRAIN_WARMUP untimed and
// BENCH_TRAIN_STEPS profiled steps, splits the CPU profile of the profiled
// steps into kinds of work by the GoMLX kernel on each sample's stack, and
// compares the matrix multiplies with GoMLX's own MatMul on the
// convolutions' shapes and on 2048² in the same process. Everything is CPU
// seconds (the machine is shared). It runs only when BENCH_TRAIN_PROFILE
// names the file to write the profile to:
//
//	BENCH_TRAIN_PROFILE=/tmp/train.prof BENCH_TRAIN_SIZE=256 BENCH_TRAIN_STEPS=20 \
//	  nice -n 19 go test -run TestProfileTrainStep -v -timeout 2h ./bench/cmd/train
func TestProfileTrainStep(t *testing.T) {
	path := os.Getenv("BENCH_TRAIN_PROFILE")
	if path == "" {
		t.Skip("set BENCH_TRAIN_PROFILE to profile training steps")
	}
	env := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
			return v
		}
		return def
	}
	S, steps, warmup := env("BENCH_TRAIN_SIZE", 256), env("BENCH_TRAIN_STEPS", 20), env("BENCH_TRAIN_WARMUP", 2)
	cfg := train.DefaultConfig(S)
	cfg.MaxSteps = warmup + steps
	cfg.ProgressEvery = 0
	rng := rand.New(rand.NewPCG(3, 4))
	var data train.Dataset
	for range 2 * cfg.BatchSize {
		s := train.Sample{Image: make([]float32, 3*S*S)}
		for i := range s.Image {
			s.Image[i] = rng.Float32()
		}
		for k, st := range student.Strides {
			s.Feats[k] = make([]float32, cfg.Student.Channels[k]*(S/st)*(S/st))
			for i := range s.Feats[k] {
				s.Feats[k][i] = float32(rng.NormFloat64())
			}
		}
		data.Train = append(data.Train, s)
	}
	data.Val = data.Train[:1]

	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	cpu0 := cpuSeconds()
	var cpuFirst, cpuWarm, cpuEnd float64
	_, err = train.Train(cfg, data, func(p train.Progress) {
		if p.Phase != "train" {
			return
		}
		switch p.Step {
		case 1:
			cpuFirst = cpuSeconds() - cpu0
		case warmup + steps:
			pprof.StopCPUProfile()
			cpuEnd = cpuSeconds()
		}
		if p.Step == warmup {
			cpuWarm = cpuSeconds()
			if err := pprof.StartCPUProfile(&buf); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	perStep := (cpuEnd - cpuWarm) / float64(steps)
	flops := 3 * float64(cfg.Student.ForwardFLOPs(S)) * float64(cfg.BatchSize) // per step
	t.Logf("train.DefaultConfig(%d), batch %d: %d profiled steps, %.3f CPU-s per step, %.3f image-steps per CPU-s; first step (graph compilation) %.2f CPU-s",
		S, cfg.BatchSize, steps, perStep, float64(cfg.BatchSize)/perStep, cpuFirst)

	prof, err := profile.Parse(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	shares := logShares(t, prof, steps)
	mm := shares[catMatMul] / float64(steps)
	t.Logf("matrix multiplies: %.1f GFLOP per step (3 × forward convolutions and dense layers) in %.3f CPU-s: %.1f GFLOP per CPU-s",
		flops/1e9, mm, flops/1e9/mm)

	// GoMLX's own MatMul on the shapes of the student's forward
	// convolutions (im2col [N·Ho·Wo, k²·Cin] × [k²·Cin, Cout]) and on 2048².
	backend, err := train.NewBackend(cfg.Backend)
	if err != nil {
		t.Fatal(err)
	}
	stem, widths := cfg.Student.StageWidths()
	B := cfg.BatchSize
	shapes := [][3]int{
		{B * (S / 2) * (S / 2), 27, stem},
		{B * (S / 4) * (S / 4), 9 * widths[0], widths[0]},
		{B * (S / 8) * (S / 8), 9 * widths[1], widths[1]},
		{B * (S / 16) * (S / 16), 9 * widths[2], widths[2]},
		{2048, 2048, 2048},
	}
	for _, sh := range shapes {
		m, k, n := sh[0], sh[1], sh[2]
		a := tensors.FromFlatDataAndDimensions(make([]float32, m*k), m, k)
		b := tensors.FromFlatDataAndDimensions(make([]float32, k*n), k, n)
		e := MustNewExec(backend, func(a, b *Node) *Node { return MatMul(a, b) })
		e.MustCall(a, b)
		reps := max(3, int(2e10/float64(2*m*k*n)))
		c0 := cpuSeconds()
		for range reps {
			e.MustCall(a, b)
		}
		c := (cpuSeconds() - c0) / float64(reps)
		t.Logf("GoMLX MatMul [%d,%d]×[%d,%d]: %.1f GFLOP per CPU-s", m, k, k, n, 2*float64(m*k*n)/c/1e9)
	}
}

// TestCategorizeProfile splits an existing CPU profile of training steps
// (BENCH_TRAIN_CATEGORIZE, e.g. from `go test -bench TrainStep/256
// -cpuprofile` in model/train) into the kinds of work TestProfileTrainStep
// reports.
func TestCategorizeProfile(t *testing.T) {
	path := os.Getenv("BENCH_TRAIN_CATEGORIZE")
	if path == "" {
		t.Skip("set BENCH_TRAIN_CATEGORIZE to a CPU profile")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prof, err := profile.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	logShares(t, prof, 1)
}

// logShares logs the categories of prof's CPU time, largest first, as
// table rows (share, CPU-s per step) and checks that they add up.
func logShares(t *testing.T, prof *profile.Profile, steps int) map[string]float64 {
	shares, total := categorize(prof)
	t.Logf("profile: %.2f CPU-s sampled (%.3f per step)", total, total/float64(steps))
	var names []string
	for k := range shares {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return shares[names[i]] > shares[names[j]] })
	var sum float64
	for _, k := range names {
		sum += shares[k]
		t.Logf("| %-50s | %5.1f%% | %.3f |", k, 100*shares[k]/total, shares[k]/float64(steps))
	}
	if d := sum - total; d > 1e-6*total || d < -1e-6*total {
		t.Errorf("categories sum to %.3f CPU-s, profile holds %.3f", sum, total)
	}
	return shares
}

// Categories of work in a training step's profile.
const (
	catMatMul    = "matrix multiplies (dot/matmul)"
	catTranspose = "transposes (im2col gradients, DotGeneral layouts)"
	catSlice     = "strided slices (im2col)"
	catConcat    = "concatenations (im2col, zero padding)"
	catPad       = "pads (shifted windows; gradients of slices)"
	catElem      = "element-wise ops (incl. Adam)"
	catReduce    = "reductions"
	catBuffers   = "buffer allocation and zeroing"
	catCompile   = "graph building and compilation"
	catDispatch  = "executor (op dispatch)"
	catTensors   = "tensor transfers"
	catData      = "batch assembly (CHW → NHWC)"
	catGC        = "garbage collection"
	catOther     = "other"
)

// categorize splits the CPU time of prof by the first frame, from the leaf
// up, that names a kind of work (runtime.asyncPreempt, where the
// scheduler interrupts a kernel, counts for that kernel).
func categorize(prof *profile.Profile) (map[string]float64, float64) {
	idx := len(prof.SampleType) - 1 // cpu nanoseconds
	rules := []struct{ prefix, cat string }{
		{"github.com/gomlx/compute/internal/gobackend/dot", catMatMul},
		{"github.com/gomlx/compute/internal/gobackend/ops.execTranspose", catTranspose},
		{"github.com/gomlx/compute/internal/gobackend/ops.(*TransposeIterator)", catTranspose},
		// compute ≥ v0.1.11: tiled transposes, run on the backend's workers
		// (their stacks start at the kernel, without execTranspose).
		{"github.com/gomlx/compute/internal/gobackend/ops.transpose", catTranspose},
		{"github.com/gomlx/compute/internal/gobackend/ops.ExecuteTranspose", catTranspose},
		{"github.com/gomlx/compute/internal/gobackend/ops.dispatchFastTranspose", catTranspose},
		{"github.com/gomlx/compute/internal/gobackend/ops.dispatchTranspose", catTranspose},
		{"github.com/gomlx/compute/internal/gobackend/ops.dispatchIdentity", catTranspose},
		{"github.com/gomlx/compute/internal/gobackend/ops.execSlice", catSlice},
		{"github.com/gomlx/compute/internal/gobackend/ops.execConcatenate", catConcat},
		{"github.com/gomlx/compute/internal/gobackend/ops.execPad", catPad},
		{"github.com/gomlx/compute/internal/gobackend/ops.execReduce", catReduce},
		{"github.com/gomlx/compute/internal/gobackend/ops.(*ReduceOutputIterator)", catReduce},
		{"github.com/gomlx/compute/internal/gobackend/ops.exec", catElem},
		{"github.com/gomlx/compute/internal/gobackend/ops.dispatchBinary", catElem},
		{"github.com/gomlx/compute/internal/gobackend/ops.simd", catElem},
		{"github.com/gomlx/compute/internal/gobackend.fillBuffer", catBuffers},
		{"github.com/gomlx/compute/internal/gobackend.(*Buffer)", catBuffers},
		{"github.com/gomlx/compute/internal/gobackend.(*Backend).GetBuffer", catBuffers},
		{"github.com/gomlx/compute/internal/gobackend.(*Backend).putBuffer", catBuffers},
		{"github.com/multiad/multiad/model/train.toNHWC", catData},
		{"github.com/multiad/multiad/model/train.BatchTensors", catData},
		{"runtime.gcBgMarkWorker", catGC},
		{"runtime.gcAssist", catGC},
		{"runtime.bgsweep", catGC},
		{"runtime.bgscavenge", catGC},
		{"github.com/gomlx/compute/internal/gobackend.(*FunctionExecutable)", catDispatch},
		{"github.com/gomlx/compute/internal/gobackend.(*Executable)", catDispatch},
		{"github.com/gomlx/gomlx/core/graph.(*Graph).RunWithBuffers", catDispatch},
		{"github.com/gomlx/gomlx/core/graph.(*Exec).compileAndExecute.func1", catDispatch},
		{"github.com/gomlx/gomlx/core/tensors.", catTensors},
		{"github.com/gomlx/compute/internal/gobackend.(*Builder)", catCompile},
		{"github.com/gomlx/compute/internal/gobackend.(*Function)", catCompile},
		{"github.com/gomlx/gomlx/core/graph.", catCompile},
		{"github.com/gomlx/gomlx/ml/model.", catCompile},
	}
	out := map[string]float64{}
	var total float64
	for _, s := range prof.Sample {
		v := float64(s.Value[idx]) / 1e9
		total += v
		cat := catOther
	frames:
		for _, loc := range s.Location {
			for li := range loc.Line { // inlined frames first
				name := loc.Line[li].Function.Name
				for _, r := range rules {
					if strings.HasPrefix(name, r.prefix) {
						cat = r.cat
						break frames
					}
				}
			}
		}
		out[cat] += v
	}
	return out, total
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(fmt.Sprint("getrusage: ", err))
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
