package train

import (
	"image"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train/traintest"
)

// loadTiles decodes n magnetic-tile training images, resized (box filter)
// to S×S RGB in [0, 1], CHW.
func loadTiles(t testing.TB, n, S int) [][]float32 {
	t.Helper()
	dir := shared.MustPath(t, "data", "industrial", "magnetic_tile", "train", "good")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".jpg") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) < n {
		t.Fatalf("only %d images in %s", len(names), dir)
	}
	var out [][]float32
	for _, name := range names[:n] {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, resizeCHW(img, S))
	}
	return out
}

// resizeCHW samples img at S×S (nearest pixel centre) into CHW RGB in [0, 1].
func resizeCHW(img image.Image, S int) []float32 {
	b := img.Bounds()
	out := make([]float32, 3*S*S)
	for y := 0; y < S; y++ {
		sy := b.Min.Y + (2*y+1)*b.Dy()/(2*S)
		for x := 0; x < S; x++ {
			sx := b.Min.X + (2*x+1)*b.Dx()/(2*S)
			r, g, bb, _ := img.At(sx, sy).RGBA()
			out[y*S+x] = float32(r) / 65535
			out[S*S+y*S+x] = float32(g) / 65535
			out[2*S*S+y*S+x] = float32(bb) / 65535
		}
	}
	return out
}

// standInTeacher computes features of images with a frozen random network
// (a differently seeded, wider student), in CHW per image: a learnable
// target while the real teacher is not available.
func standInTeacher(t testing.TB, images [][]float32, S int, channels [3]int) []Sample {
	t.Helper()
	out, err := standIn(t, S, channels)(images)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// standIn is standInTeacher as a TeacherFunc.
func standIn(t testing.TB, S int, channels [3]int) TeacherFunc {
	t.Helper()
	backend, err := NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := student.Config{Width: 16, Depth: 1, SEReduction: 4, Channels: channels}
	store := model.NewStore()
	store.SetParam(nn.SeedParam, 12345)
	exec := model.MustNewExec(backend, store, func(scope *model.Scope, x *Node) []*Node {
		f := student.Forward(scope.At("teacher"), cfg, x)
		return f[:]
	})
	return func(images [][]float32) ([]Sample, error) {
		var out []Sample
		for _, img := range images {
			x := toNHWC([]Sample{{Image: img}}, -1, 3, S)
			res := exec.MustCall(tensors.FromFlatDataAndDimensions(x, 1, S, S, 3))
			s := Sample{Image: img}
			for k := range res {
				d := res[k].Shape().Dimensions
				hwc := tensors.MustCopyFlatData[float32](res[k])
				h, c := d[1], d[3]
				chw := make([]float32, len(hwc))
				for i := 0; i < h*h; i++ {
					for ch := 0; ch < c; ch++ {
						chw[ch*h*h+i] = hwc[i*c+ch]
					}
				}
				s.Feats[k] = chw
			}
			out = append(out, s)
		}
		return out, nil
	}
}

func tinyConfig(S int) Config {
	cfg := DefaultConfig(S)
	cfg.Student = student.Config{Width: 8, Depth: 1, SEReduction: 2, Channels: [3]int{24, 32, 96}}
	cfg.BatchSize = 2
	cfg.WarmupSteps = 0
	return cfg
}

func TestBadInput(t *testing.T) {
	const S = 32
	imgs := loadTiles(t, 2, S)
	data := standInTeacher(t, imgs, S, [3]int{24, 32, 96})
	short := data[0]
	short.Image = short.Image[:10]
	badFeat := data[0]
	badFeat.Feats[2] = badFeat.Feats[2][:5]
	cfg := tinyConfig(S)
	cfg.Epochs = 1
	badCfg := cfg
	badCfg.Size = 40
	flipCfg := cfg
	flipCfg.Augment = Augment{HFlip: true}
	flipCfg.Epochs = 5 // some image is flipped (seeded)
	wrongTeacher := func(images [][]float32) ([]Sample, error) { return data[:1], nil }
	noisyCfg := cfg
	noisyCfg.Denoise = 1.5
	for _, tc := range []struct {
		name string
		cfg  Config
		data Dataset
		want string
	}{
		{"empty", cfg, Dataset{}, "empty training set"},
		{"short image", cfg, Dataset{Train: []Sample{data[1], short}}, "training image 1 has 10 values"},
		{"short features", cfg, Dataset{Train: data, Val: []Sample{badFeat}}, "validation image 0: teacher features at stride 16"},
		{"bad size", badCfg, Dataset{Train: data}, "multiple of 16"},
		{"flips without teacher", flipCfg, Dataset{Train: data}, "augmentation needs Dataset.Teacher"},
		{"teacher count", flipCfg, Dataset{Train: data, Teacher: wrongTeacher}, "teacher returned 1 samples for"},
		{"denoise", noisyCfg, Dataset{Train: data}, "denoise probability 1.5 out of range"},
	} {
		_, err := Train(tc.cfg, tc.data, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := Score(cfg, nil, []Sample{short}); err == nil {
		t.Error("Score accepted a short image")
	}
}

func snapshot(store *model.Store, prefix string) map[string][]float32 {
	out := map[string][]float32{}
	for v := range store.IterVariables() {
		if strings.HasPrefix(v.Path(), prefix) && v.Trainable {
			out[v.Path()] = tensors.MustCopyFlatData[float32](v.MustValue())
		}
	}
	return out
}

func changed(a, b map[string][]float32) (n int) {
	for k, va := range a {
		vb := b[k]
		for i := range va {
			if va[i] != vb[i] {
				n++
				break
			}
		}
	}
	return n
}

// oneBatchTrainer builds the graphs of a tiny one-epoch configuration at
// S px (edit changes it first, if not nil) and returns them with a batch of
// two magnetic tiles and stand-in teacher features.
func oneBatchTrainer(t *testing.T, S int, edit func(*Config)) (*trainer, [4]*tensors.Tensor) {
	t.Helper()
	data := standInTeacher(t, loadTiles(t, 2, S), S, [3]int{24, 32, 96})
	cfg := tinyConfig(S)
	cfg.Epochs = 1
	if edit != nil {
		edit(&cfg)
	}
	be, err := NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trainer{cfg: cfg, backend: be, store: model.NewStore()}
	tr.build()
	return tr, tr.batchTensors(data)
}

// TestOptimizersUpdateOwnVariables runs one student step and one
// discriminator step and checks which variables each changed.
func TestOptimizersUpdateOwnVariables(t *testing.T) {
	tr, in := oneBatchTrainer(t, 64, func(cfg *Config) { cfg.AdvWeight = 0.1 })
	// The first calls create the variables; compare the second ones.
	out := tr.studentExec.MustCall(in[0], in[1], in[2], in[3])
	tr.discExec.MustCall(in[3], out[2])
	st0, d0 := snapshot(tr.store, "/student/"), snapshot(tr.store, "/disc/")
	if len(st0) == 0 || len(d0) == 0 {
		t.Fatalf("%d student and %d discriminator variables", len(st0), len(d0))
	}
	out = tr.studentExec.MustCall(in[0], in[1], in[2], in[3])
	st1, d1 := snapshot(tr.store, "/student/"), snapshot(tr.store, "/disc/")
	if n := changed(d0, d1); n != 0 {
		t.Errorf("student step changed %d discriminator variables", n)
	}
	if n := changed(st0, st1); n != len(st0) {
		t.Errorf("student step changed %d of %d student variables", n, len(st0))
	}
	tr.discExec.MustCall(in[3], out[2])
	st2, d2 := snapshot(tr.store, "/student/"), snapshot(tr.store, "/disc/")
	if n := changed(st1, st2); n != 0 {
		t.Errorf("discriminator step changed %d student variables", n)
	}
	if n := changed(d1, d2); n != len(d1) {
		t.Errorf("discriminator step changed %d of %d discriminator variables", n, len(d1))
	}
}

// TestExecsReadCurrentWeights checks that every training graph reads the
// weights as they are when it runs, not as they were when it was compiled:
// a second student step on the same batch has another loss, and the
// validation graph's scores move after a step. GoMLX ≥ v0.28.13 on compute
// ≥ v0.1.13 embeds the variables of graphs not marked as training as
// constants when they are compiled, which makes both fail (the step's loss
// repeats forever; calibration scores the first epoch's weights).
func TestExecsReadCurrentWeights(t *testing.T) {
	tr, in := oneBatchTrainer(t, 32, nil)
	scores := func() []float32 {
		out := tr.scoreExec.MustCall(in[0], in[1], in[2], in[3])
		return tensors.MustCopyFlatData[float32](out[1])
	}
	kd := func() float32 { return tr.studentExec.MustCall(in[0], in[1], in[2], in[3])[0].Value().(float32) }
	s0, kd0 := scores(), kd()
	s1, kd1 := scores(), kd()
	if kd1 == kd0 {
		t.Errorf("the second student step on the same batch has the first one's loss %g: it did not read the updated weights", kd0)
	}
	if slices.Equal(s0, s1) {
		t.Errorf("the validation scores %v did not change after a student step: the graph did not read the updated weights", s0)
	}
}

// TestResume interrupts a run after its second epoch's checkpoint,
// resumes it, and compares with an uninterrupted run of the same seed.
func TestResume(t *testing.T) {
	const S = 32
	imgs := loadTiles(t, 4, S)
	data := Dataset{Train: standInTeacher(t, imgs, S, [3]int{24, 32, 96}), Teacher: standIn(t, S, [3]int{24, 32, 96})}
	cfg := tinyConfig(S)
	cfg.Epochs = 4
	cfg.Augment = Augment{HFlip: true, VFlip: true}
	cfg.Denoise = 0.5 // resuming replays the synthetic defects too
	dir := t.TempDir()
	cfg.Checkpoint = filepath.Join(dir, "a.ckpt")
	_, err := Train(cfg, data, func(p Progress) {
		if p.Step == 5 {
			panic("interrupted")
		}
	})
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("interrupted run: %v", err)
	}
	resumed, err := Train(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Checkpoint = filepath.Join(dir, "b.ckpt")
	full, err := Train(cfg, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The finished checkpoint holds the returned student weights.
	ckCfg, weights, err := CheckpointStudent(cfg.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if ckCfg.Size != S || ckCfg.Epochs != cfg.Epochs || len(weights) != len(full.Student) {
		t.Errorf("checkpoint: size %d, epochs %d, %d student weights; want %d, %d, %d", ckCfg.Size, ckCfg.Epochs, len(weights), S, cfg.Epochs, len(full.Student))
	}
	for k, a := range full.Student {
		if b := weights[k]; !slices.Equal(a.Dims, b.Dims) || !slices.Equal(a.Data, b.Data) {
			t.Errorf("checkpoint weight %s differs from the result's", k)
		}
	}
	if resumed.Steps != 8 || full.Steps != 8 || len(resumed.EpochKDLoss) != 2 {
		t.Fatalf("steps %d and %d, resumed epochs %d", resumed.Steps, full.Steps, len(resumed.EpochKDLoss))
	}
	for k, a := range full.Student {
		b := resumed.Student[k]
		if d := maxDiff(a.Data, b.Data); d > 1e-5 {
			t.Errorf("%s differs by %g after resuming", k, d)
		}
	}
	// The finished checkpoint re-scores the same weights with another map
	// and quantile without training further.
	remap := cfg
	remap.Map = student.MapConfig{Fuse: student.FuseProduct, Sigma: 2}
	remap.Quantile = 0.5
	again, err := Train(remap, data, nil)
	if err != nil {
		t.Fatalf("resuming a finished run with another map: %v", err)
	}
	if again.Steps != 8 || len(again.EpochKDLoss) != 0 {
		t.Errorf("resumed finished run trained: steps %d, epochs %d", again.Steps, len(again.EpochKDLoss))
	}
	for k, a := range full.Student {
		if d := maxDiff(a.Data, again.Student[k].Data); d != 0 {
			t.Errorf("%s changed by %g on re-scoring", k, d)
		}
	}
	if again.Calibration.Quantile != 0.5 || again.Calibration.ImageThreshold == full.Calibration.ImageThreshold {
		t.Errorf("re-scored calibration %+v, first %+v", again.Calibration.ImageThreshold, full.Calibration.ImageThreshold)
	}
	// Without synthetic defects the same seed trains other weights.
	clean := cfg
	clean.Denoise = 0
	clean.Checkpoint = filepath.Join(dir, "c.ckpt")
	plain, err := Train(clean, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	same := true
	for k, a := range full.Student {
		same = same && maxDiff(a.Data, plain.Student[k].Data) == 0
	}
	if same {
		t.Error("Denoise 0.5 trained the same weights as Denoise 0")
	}
	// A different configuration refuses the checkpoint.
	cfg.Seed = 99
	if _, err := Train(cfg, data, nil); err == nil || !strings.Contains(err.Error(), "different configuration") {
		t.Errorf("mismatched checkpoint: %v", err)
	}
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// mobileNetSamples computes the real teacher's features (MobileNetV2
// imported from TFLite, run in ONNX Runtime) for images.
func mobileNetSamples(t testing.TB, images [][]float32, S int) []Sample {
	t.Helper()
	out, err := TeacherFeatures(traintest.MobileNetSession(t, nil), images, S, 8)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLearning trains on real magnetic-tile images (64×64) against the
// real MobileNetV2 teacher: the KD loss must fall at least 5× and the
// discriminator's loss must move. Hard mining is off: its loss is the mean
// over the worst pixels of each batch, which stay the worst by design.
func TestLearning(t *testing.T) {
	const S = 64
	imgs := loadTiles(t, 6, S)
	data := mobileNetSamples(t, imgs, S)
	cfg := DefaultConfig(S)
	cfg.Student.Width = 16
	cfg.Student.Depth = 1
	cfg.Epochs = 0
	cfg.MaxSteps = 150
	cfg.BatchSize = 4
	cfg.LR = 6e-3
	cfg.Schedule = "constant"
	cfg.AdvWeight = 0.05
	cfg.HardMining = 0
	cfg.ProgressEvery = 10 * time.Second
	start := time.Now()
	res, err := Train(cfg, Dataset{Train: data[:4], Val: data[4:]}, func(p Progress) { t.Log(Line(p)) })
	if err != nil {
		t.Fatal(err)
	}
	last := res.EpochKDLoss[len(res.EpochKDLoss)-1]
	t.Logf("took %v; KD loss %.4f → %.4f (%.1f×); disc loss per epoch %.3f … %.3f; calibration %+v",
		time.Since(start), res.FirstKDLoss, last, res.FirstKDLoss/last, res.EpochDiscLoss[0],
		res.EpochDiscLoss[len(res.EpochDiscLoss)-1], res.Calibration)
	if res.FirstKDLoss < 5*last {
		t.Errorf("KD loss fell only from %g to %g", res.FirstKDLoss, last)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, d := range res.EpochDiscLoss {
		lo, hi = math.Min(lo, d), math.Max(hi, d)
	}
	if hi-lo < 0.01 {
		t.Errorf("discriminator loss did not move: %v", res.EpochDiscLoss)
	}
	c := res.Calibration
	if len(c.Scores) != 2 || !(c.ScoreMin <= c.ImageThreshold && c.ImageThreshold <= c.ScoreMax) || !(c.MapMin < c.PixelThreshold && c.PixelThreshold <= c.MapMax) {
		t.Errorf("inconsistent calibration %+v", c)
	}
}

func TestQuantile(t *testing.T) {
	// numpy.quantile([3, 1, 4, 1, 5], q) for q = 0, 0.5, 0.9, 1.
	xs := []float64{3, 1, 4, 1, 5}
	for q, want := range map[float64]float64{0: 1, 0.5: 3, 0.9: 4.6, 1: 5} {
		if got := Quantile(xs, q); math.Abs(got-want) > 1e-12 {
			t.Errorf("Quantile(%v) = %g, want %g", q, got, want)
		}
	}
}

// TestTransform checks Transform.Apply on a 2-channel 3×3 image.
func TestTransform(t *testing.T) {
	img := []float32{
		1, 2, 3, 4, 5, 6, 7, 8, 9,
		10, 20, 30, 40, 50, 60, 70, 80, 90,
	}
	for _, tc := range []struct {
		a    Transform
		want []float32
	}{
		{Transform{}, img},
		{Transform{HFlip: true}, []float32{3, 2, 1, 6, 5, 4, 9, 8, 7, 30, 20, 10, 60, 50, 40, 90, 80, 70}},
		{Transform{VFlip: true}, []float32{7, 8, 9, 4, 5, 6, 1, 2, 3, 70, 80, 90, 40, 50, 60, 10, 20, 30}},
		{Transform{HFlip: true, VFlip: true}, []float32{9, 8, 7, 6, 5, 4, 3, 2, 1, 90, 80, 70, 60, 50, 40, 30, 20, 10}},
		{Transform{DX: 1}, []float32{1, 1, 2, 4, 4, 5, 7, 7, 8, 10, 10, 20, 40, 40, 50, 70, 70, 80}},
		{Transform{DY: -1}, []float32{4, 5, 6, 7, 8, 9, 7, 8, 9, 40, 50, 60, 70, 80, 90, 70, 80, 90}},
		{Transform{HFlip: true, DX: -2}, []float32{1, 1, 1, 4, 4, 4, 7, 7, 7, 10, 10, 10, 40, 40, 40, 70, 70, 70}},
	} {
		if got := tc.a.Apply(img, 3); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.a, got, tc.want)
		}
	}
}

// TestFlipAugmentation trains with flips and checks that the teacher is
// asked for the features of flipped images, and only for flips of training
// images.
func TestFlipAugmentation(t *testing.T) {
	const S = 32
	imgs := loadTiles(t, 4, S)
	base := standIn(t, S, [3]int{24, 32, 96})
	data, err := base(imgs)
	if err != nil {
		t.Fatal(err)
	}
	var calls, flipped int
	teacher := func(images [][]float32) ([]Sample, error) {
		calls++
		for _, im := range images {
			found := false
			for _, orig := range imgs {
				for _, f := range [][2]bool{{true, false}, {false, true}, {true, true}} {
					if slices.Equal(im, Transform{HFlip: f[0], VFlip: f[1]}.Apply(orig, S)) {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("teacher asked for an image that is no flip of a training image")
			}
			flipped++
		}
		return base(images)
	}
	cfg := tinyConfig(S)
	cfg.Epochs = 3
	cfg.Augment = Augment{HFlip: true, VFlip: true}
	res, err := Train(cfg, Dataset{Train: data, Teacher: teacher}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 3 epochs × 4 images, each flipped with probability 3/4.
	if calls == 0 || flipped < 3 || flipped > 12 {
		t.Errorf("teacher called %d times for %d flipped images", calls, flipped)
	}
	if res.Steps != 6 {
		t.Errorf("steps %d, want 6", res.Steps)
	}
}
