package train

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/model/student"
)

// randomSamples returns n samples with random images and features.
func randomSamples(n, S int, ch [3]int) []Sample {
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = r.Float32()
		}
		return v
	}
	out := make([]Sample, n)
	for i := range out {
		out[i].Image = fill(3 * S * S)
		for k, st := range student.Strides {
			out[i].Feats[k] = fill(ch[k] * (S / st) * (S / st))
		}
	}
	return out
}

// BenchmarkTrainStep measures one training step (student + discriminator)
// of the default student, batch 8; it reports images/s and GFLOP/s
// (3 × forward FLOPs per image for forward + backward).
func BenchmarkTrainStep(b *testing.B) {
	for _, S := range []int{128, 256} {
		b.Run(fmt.Sprint(S), func(b *testing.B) {
			cfg := DefaultConfig(S)
			cfg.HardMining, _ = strconv.ParseFloat(os.Getenv("BENCH_HARD"), 64) // 0 unless set
			be, err := NewBackend("")
			if err != nil {
				b.Fatal(err)
			}
			tr := &trainer{cfg: cfg, backend: be, store: model.NewStore()}
			tr.build()
			in := tr.batchTensors(randomSamples(cfg.BatchSize, S, cfg.Student.Channels))
			step := func() {
				out := tr.studentExec.MustCall(in[0], in[1], in[2], in[3])
				tr.discExec.MustCall(in[3], out[2])
			}
			step() // compile
			cpu0 := cpuSeconds()
			b.ResetTimer()
			for b.Loop() {
				step()
			}
			cpu := cpuSeconds() - cpu0
			ips := float64(b.N*cfg.BatchSize) / b.Elapsed().Seconds()
			b.ReportMetric(ips, "img/s")
			b.ReportMetric(float64(b.N*cfg.BatchSize)/cpu, "img/cpu-s")
			b.ReportMetric(float64(b.N*cfg.BatchSize)*3*float64(cfg.Student.ForwardFLOPs(S))/1e9/cpu, "GFLOP/cpu-s")
		})
	}
}

// cpuSeconds is the process's user + system CPU time (the machine is
// shared, so wall-clock rates understate the speed).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
