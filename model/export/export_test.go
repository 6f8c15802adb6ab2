package export

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/model/train"
)

// standInTeacher is an ONNX graph with the teacher's interface (image
// [N,3,S,S] → feat_s4 [N,24,S/4,S/4], feat_s8 [N,32,…], feat_s16 [N,96,…])
// made of random strided convolutions.
func standInTeacher(t *testing.T, S int) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	b := onnxb.New()
	x := b.Input("image", onnx.TensorProto_FLOAT, "N", 3, S, S)
	cins := []int{3, 24, 32}
	couts := []int{24, 32, 96}
	ks := []int{4, 2, 2}
	for i := range couts {
		w := make([]float32, couts[i]*cins[i]*ks[i]*ks[i])
		for j := range w {
			w[j] = float32(r.NormFloat64() / math.Sqrt(float64(cins[i]*ks[i]*ks[i])))
		}
		bias := make([]float32, couts[i])
		for j := range bias {
			bias[j] = float32(r.NormFloat64() * 0.1)
		}
		wt := b.Const("w", []int64{int64(couts[i]), int64(cins[i]), int64(ks[i]), int64(ks[i])}, w)
		bt := b.Const("b", []int64{int64(couts[i])}, bias)
		x = b.Op("Relu", []string{b.Op("Conv", []string{x, wt, bt}, onnxb.Attrs{
			"kernel_shape": []int64{int64(ks[i]), int64(ks[i])}, "strides": []int64{int64(ks[i]), int64(ks[i])}})}, nil)
		h := S / student.Strides[i]
		b.Output(b.Identity(x, teacher.FeatureOutputs[i]), onnx.TensorProto_FLOAT, "N", couts[i], h, h)
	}
	m, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func randomImages(n, S int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]float32, n*3*S*S)
	for i := range out {
		out[i] = r.Float32()
	}
	return out
}

// teacherSamples runs the stand-in teacher in ONNX Runtime.
func teacherSamples(t *testing.T, tch []byte, images []float32, n, S int) []train.Sample {
	t.Helper()
	outs := runModel(t, tch, nil, teacher.FeatureOutputs[:], ort.Tensor{Shape: []int64{int64(n), 3, int64(S), int64(S)}, Data: images})
	ss := make([]train.Sample, n)
	for i := range ss {
		ss[i].Image = images[i*3*S*S : (i+1)*3*S*S]
		for k, o := range outs {
			per := len(o.Data) / n
			ss[i].Feats[k] = o.Data[i*per : (i+1)*per]
		}
	}
	return ss
}

func TestParity(t *testing.T) {
	const S, N = 64, 8
	tch := standInTeacher(t, S)
	images := randomImages(N, S, 3)
	samples := teacherSamples(t, tch, images, N, S)
	for name, mc := range map[string]student.MapConfig{
		"sum":            {Fuse: student.FuseSum},
		"product":        {Fuse: student.FuseProduct},
		"weighted sum":   {Fuse: student.FuseSum, Weights: [3]float64{0.5, 2, 0}},
		"no blur":        {Fuse: student.FuseProduct, Sigma: -1},
		"pooled":         {Fuse: student.FuseSum, Pool: [3]int{3, 5, 1}},
		"pooled product": {Fuse: student.FuseProduct, Pool: [3]int{0, 3, 3}},
	} {
		t.Run(name, func(t *testing.T) {
			checkParity(t, S, N, images, samples, mc, func(o Options) ([]byte, error) { return Build(tch, o) })
		})
	}
}

// TestParityMobileNetV2 exports with the real teachers imported from
// TFLite (each built-in one, MobileNetV2 and MobileNet EdgeTPU, with each
// of its layer sets: their channel counts differ), both embedded from its
// ONNX bytes and built (pruned) by BuildFeatures.
func TestParityMobileNetV2(t *testing.T) {
	const S, N = 64, 8
	for _, bt := range teacher.Builtins() {
		for set := range bt.Layers {
			t.Run(bt.Name+"/"+set, func(t *testing.T) {
				tt, err := teacher.ImportBuiltin(bt, shared.MustPath(t, bt.Path), []string{set})
				if err != nil {
					t.Fatal(err)
				}
				tonnx, err := tt.ONNX()
				if err != nil {
					t.Fatal(err)
				}
				images := randomImages(N, S, 4)
				samples := teacherSamples(t, tonnx, images, N, S)
				t.Run("embedded", func(t *testing.T) {
					checkParity(t, S, N, images, samples, student.MapConfig{Fuse: student.FuseSum}, func(o Options) ([]byte, error) { return Build(tonnx, o) })
				})
				if set != teacher.LayersStageEnds {
					return
				}
				t.Run("no-se", func(t *testing.T) {
					checkParity(t, S, N, images, samples, student.MapConfig{Fuse: student.FuseProduct}, func(o Options) ([]byte, error) { return Build(tonnx, o) }, 0)
				})
				t.Run("pruned", func(t *testing.T) {
					checkParity(t, S, N, images, samples, student.MapConfig{Fuse: student.FuseSum}, func(o Options) ([]byte, error) {
						return BuildWith(onnxb.DefaultOpset, func(b *onnxb.Builder, img string) ([3]string, error) {
							return tt.BuildFeatures(b, img, "teacher/")
						}, o)
					})
				})
			})
		}
	}
}

// tinyStudent trains a tiny student (width 8, one block a stage, SE
// reduction 2, three steps) on samples, sized to the samples' teacher
// channels, after edit (if any) has changed the configuration. It returns
// the result and GoMLX's maps and scores of samples.
func tinyStudent(t *testing.T, S int, samples []train.Sample, edit func(*train.Config)) (*train.Result, [][]float32, []float64) {
	t.Helper()
	cfg := train.DefaultConfig(S)
	cfg.Student.Width, cfg.Student.Depth, cfg.Student.SEReduction = 8, 1, 2
	for k, st := range student.Strides { // the student adapts to the teacher's channels
		cfg.Student.Channels[k] = len(samples[0].Feats[k]) / ((S / st) * (S / st))
	}
	cfg.Epochs, cfg.MaxSteps, cfg.BatchSize, cfg.WarmupSteps, cfg.LR = 0, 3, 4, 0, 1e-2
	if edit != nil {
		edit(&cfg)
	}
	res, err := train.Train(cfg, train.Dataset{Train: samples}, nil)
	if err != nil {
		t.Fatal(err)
	}
	maps, scores, err := train.Score(cfg, res.Student, samples)
	if err != nil {
		t.Fatal(err)
	}
	return res, maps, scores
}

// studentOptions are the export options of a trained student.
func studentOptions(r *train.Result) Options {
	return Options{Size: r.Config.Size, Student: r.Config.Student, Map: r.Config.Map, Weights: r.Student}
}

// runModel runs an ONNX model in ONNX Runtime (CPU, one thread) on the
// named inputs and returns the named outputs (nil: the model's own).
func runModel(t *testing.T, model []byte, inputs, outputs []string, in ...ort.Tensor) []ort.Tensor {
	t.Helper()
	sess, err := ort.NewSession(model, inputs, outputs, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Run(in...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runGraph runs the scoring model on N images in ONNX Runtime, checks the
// shapes of its outputs and returns the maps and scores.
func runGraph(t *testing.T, model []byte, images []float32, N, S int) (maps, scores []float32) {
	t.Helper()
	out := runModel(t, model, []string{InputName}, []string{MapName, ScoreName}, ort.Tensor{Shape: []int64{int64(N), 3, int64(S), int64(S)}, Data: images})
	if got := out[0].Shape; len(got) != 4 || got[0] != int64(N) || got[1] != 1 || got[2] != int64(S) || got[3] != int64(S) {
		t.Fatalf("%s shape %v", MapName, got)
	}
	if got := out[1].Shape; len(got) != 1 || got[0] != int64(N) {
		t.Fatalf("%s shape %v", ScoreName, got)
	}
	return out[0].Data, out[1].Data
}

// compareMaps checks ONNX maps and scores against the reference's within
// 1e-4 of the reference maps' range, and returns that tolerance. A nil
// want score is the maximum of its map.
func compareMaps(t *testing.T, S int, gotMaps, gotScores []float32, want [][]float32, wantScores []float64) float64 {
	t.Helper()
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, m := range want {
		for _, v := range m {
			lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
		}
	}
	tol := 1e-4 * (hi - lo)
	var maxDiff float64
	for i, m := range want {
		top := math.Inf(-1)
		for j, v := range m {
			maxDiff = math.Max(maxDiff, math.Abs(float64(v)-float64(gotMaps[i*S*S+j])))
			top = math.Max(top, float64(v))
		}
		if wantScores != nil {
			top = wantScores[i]
		}
		if d := math.Abs(top - float64(gotScores[i])); d > tol {
			t.Errorf("image %d: score %g (ONNX) vs %g (reference)", i, gotScores[i], top)
		}
	}
	t.Logf("map range [%g, %g], max |ONNX − reference| = %g (tolerance %g)", lo, hi, maxDiff, tol)
	if maxDiff > tol || !(hi-lo > 0) {
		t.Errorf("maps differ by %g > %g (range %g)", maxDiff, tol, hi-lo)
	}
	return tol
}

// checkParity trains a tiny student for a few steps on samples, exports it
// with build and compares ONNX Runtime's maps and scores with GoMLX's.
// se, when given, overrides the SE reduction ratio (0: no SE blocks).
func checkParity(t *testing.T, S, N int, images []float32, samples []train.Sample, mc student.MapConfig, build func(Options) ([]byte, error), se ...int) {
	res, wantMaps, wantScores := tinyStudent(t, S, samples, func(cfg *train.Config) {
		if len(se) > 0 {
			cfg.Student.SEReduction = se[0]
		}
		cfg.Map.Fuse, cfg.Map.Weights, cfg.Map.Pool = mc.Fuse, mc.Weights, mc.Pool
		if mc.Sigma < 0 {
			cfg.Map.Sigma = 0
		}
	})
	model, err := build(studentOptions(res))
	if err != nil {
		t.Fatal(err)
	}
	gotMaps, gotScores := runGraph(t, model, images, N, S)
	tol := compareMaps(t, S, gotMaps, gotScores, wantMaps, wantScores)
	// Batch 1 agrees with batch 8.
	for i := 0; i < 2; i++ {
		one, _ := runGraph(t, model, images[i*3*S*S:(i+1)*3*S*S], 1, S)
		var d float64
		for j, v := range one {
			d = math.Max(d, math.Abs(float64(v)-float64(gotMaps[i*S*S+j])))
		}
		if d > tol {
			t.Errorf("image %d: batch 1 and batch 8 maps differ by %g", i, d)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	const S = 64
	stand := standInTeacher(t, S)
	cfg := student.Config{Width: 8, Depth: 1, SEReduction: 2, Channels: [3]int{24, 32, 96}}
	mc := student.MapConfig{Fuse: student.FuseSum, Sigma: 1}
	for _, tc := range []struct {
		name    string
		teacher []byte
		opt     Options
	}{
		{"garbage teacher", []byte("not onnx"), Options{Size: S, Student: cfg, Map: mc}},
		{"missing weights", stand, Options{Size: S, Student: cfg, Map: mc}},
		{"bad size", stand, Options{Size: 50, Student: cfg, Map: mc}},
		{"bad fusion", stand, Options{Size: S, Student: cfg, Map: student.MapConfig{Fuse: "max"}}},
		{"wrong weight shape", stand, Options{Size: S, Student: cfg, Map: mc,
			Weights: map[string]student.Tensor{"/stem/kernel": {Dims: []int{1}, Data: []float32{1}}}}},
	} {
		if _, err := Build(tc.teacher, tc.opt); err == nil {
			t.Errorf("%s: no error", tc.name)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}
