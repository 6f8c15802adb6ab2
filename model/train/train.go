package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend" // the pure-Go backend "go"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/train/optimizer"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
)

var (
	cos = math.Cos
	pi  = math.Pi
)

// Scope names of the two networks in the variable store.
const (
	StudentScope = "student"
	DiscScope    = "disc"
)

// Sample is one preprocessed image with its cached teacher features, all
// in ONNX layout without the batch axis: Image [3, S, S] in [0, 1], Feats[i]
// [C_i, S/stride_i, S/stride_i].
type Sample struct {
	Image []float32
	Feats [3][]float32
}

// Dataset holds training images and held-out normal images for calibration
// (Val may be empty: then thresholds are computed on the training images).
type Dataset struct {
	Train []Sample
	Val   []Sample
	// Teacher computes the teacher features of the flipped or shifted
	// images that augmentation makes (required when Config.Augment is on).
	// Transforming the cached features instead would give wrong targets:
	// the teacher is far from flip-equivariant (on magnetic tiles the
	// flipped features of an image differ from the features of the flipped
	// image by a mean 1 − cos of 0.35, 0.23 and 0.14 at strides 4, 8 and
	// 16, more than the trained student's own error).
	Teacher TeacherFunc
}

// TeacherFunc computes the teacher features of images ([3, S, S] each, in
// ONNX layout) as samples with Feats set; see SessionTeacher.
type TeacherFunc func(images [][]float32) ([]Sample, error)

// Progress reports the state of training.
type Progress struct {
	Epoch, Epochs int // 1-based epoch
	Step, Steps   int // steps done, total steps
	KDLoss        float64
	AdvLoss       float64 // student's adversarial BCE (0 if disabled)
	DiscLoss      float64 // discriminator's BCE (0 if disabled)
	ImagesPerSec  float64
	Elapsed, ETA  time.Duration
	Phase         string // "train" or "validate"
}

// Calibration holds statistics of the anomaly maps of held-out normal images.
type Calibration struct {
	Quantile       float64   // quantile used for the thresholds
	ImageThreshold float64   // Quantile of the image scores
	PixelThreshold float64   // Quantile of all map pixels
	ScoreMin       float64   // min image score
	ScoreMax       float64   // max image score
	MapMin, MapMax float64   // min and max map pixel
	Scores         []float64 // image scores of the held-out normals
}

// Result is a trained model.
type Result struct {
	Config Config
	// Student holds the student's variables by path relative to the student
	// scope (e.g. "/stage0/block1/conv2/kernel").
	Student map[string]student.Tensor
	// Steps is the number of optimisation steps taken (including resumed).
	Steps int
	// EpochKDLoss is the mean KD loss of each epoch of this run.
	EpochKDLoss []float64
	// FirstKDLoss is the KD loss of the first step of this run.
	FirstKDLoss float64
	// DiscLoss is the mean discriminator loss of each epoch (nil if disabled).
	EpochDiscLoss []float64
	// Calibration summarises the held-out normals.
	Calibration Calibration
}

// NewBackend returns the configured GoMLX backend: config if not empty,
// else $GOMLX_BACKEND, else the pure-Go backend "go". For the Go backend,
// ops run one at a time (each op still uses all workers) unless the
// configuration says otherwise: running independent ops in parallel
// deadlocked in gomlx/compute v0.1.2 (two MatMuls each waiting in
// workerspool.Saturate for the other's worker), and it was no faster.
func NewBackend(config string) (b compute.Backend, err error) {
	if config == "" {
		config = os.Getenv(compute.ConfigEnvVar)
	}
	if config == "" {
		config = "go"
	}
	if name, opts, _ := strings.Cut(config, ":"); name == "go" && !strings.Contains(opts, "ops_") {
		if opts != "" {
			opts += ","
		}
		config = "go:" + opts + "ops_sequential"
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("train: backend %q: %v", config, r)
		}
	}()
	b, err = compute.NewWithConfig(config)
	if err != nil {
		return nil, fmt.Errorf("train: backend %q: %w", config, err)
	}
	return b, nil
}

// checkSamples validates the tensor sizes of samples.
func checkSamples(name string, ss []Sample, cfg Config) error {
	S := cfg.Size
	for i, s := range ss {
		if len(s.Image) != 3*S*S {
			return fmt.Errorf("train: %s image %d has %d values, want 3×%d×%d = %d", name, i, len(s.Image), S, S, 3*S*S)
		}
		for k, st := range student.Strides {
			h := S / st
			want := cfg.Student.Channels[k] * h * h
			if len(s.Feats[k]) != want {
				return fmt.Errorf("train: %s image %d: teacher features at stride %d have %d values, want %d×%d×%d = %d",
					name, i, st, len(s.Feats[k]), cfg.Student.Channels[k], h, h, want)
			}
		}
	}
	return nil
}

// Train trains the student (and, if AdvWeight > 0, the discriminator) and
// calibrates thresholds on data.Val. progress, if not nil, is called
// during training.
func Train(cfg Config, data Dataset, progress func(Progress)) (res *Result, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(data.Train) == 0 {
		return nil, errors.New("train: empty training set")
	}
	if err := checkSamples("training", data.Train, cfg); err != nil {
		return nil, err
	}
	if err := checkSamples("validation", data.Val, cfg); err != nil {
		return nil, err
	}
	if cfg.Augment.On() && data.Teacher == nil {
		return nil, errors.New("train: augmentation needs Dataset.Teacher to compute the features of augmented images")
	}
	backend, err := NewBackend(cfg.Backend)
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("train: %v", r)
		}
	}()
	t := &trainer{cfg: cfg, backend: backend, store: model.NewStore()}
	t.store.SetParam(nn.SeedParam, int(cfg.Seed))
	if err := t.resume(); err != nil {
		return nil, err
	}
	res, err = t.run(data, progress)
	if err != nil {
		return nil, err
	}
	val := data.Val
	if len(val) == 0 {
		val = data.Train
	}
	if progress != nil {
		progress(Progress{Phase: "validate", Epoch: cfg.Epochs, Epochs: cfg.Epochs, Step: res.Steps, Steps: res.Steps})
	}
	maps, scores, err := t.score(val)
	if err != nil {
		return nil, err
	}
	res.Calibration = Calibrate(maps, scores, cfg.Quantile)
	res.Student = t.studentWeights()
	return res, nil
}

type trainer struct {
	cfg         Config
	backend     compute.Backend
	store       *model.Store
	startStep   int
	studentExec *model.Exec
	discExec    *model.Exec
	scoreExec   *model.Exec
	studentLR   *model.Variable
	discLR      *model.Variable
	studentAdam optimizer.Interface
	discAdam    optimizer.Interface
}

func (t *trainer) build() {
	cfg := t.cfg
	root := t.store.RootScope()
	t.studentLR = optimizer.LearningRateVar(root.At(StudentScope), dtypes.Float32, cfg.LR)
	t.studentAdam = optimizer.Adam().LearningRate(cfg.LR).Done()
	t.studentExec = model.MustNewExec(t.backend, t.store, func(scope *model.Scope, in []*Node) []*Node {
		st := scope.At(StudentScope)
		s := student.Forward(st, cfg.Student, in[0])
		kd := student.KDLossHard(s, [3]*Node{in[1], in[2], in[3]}, cfg.HardMining)
		loss := kd
		adv := ScalarZero(kd.Graph(), kd.DType())
		if cfg.AdvWeight > 0 {
			adv = student.BCEWithLogits(student.Discriminator(scope.At(DiscScope), nn.NormalizeChannels(s[2])), true)
			loss = Add(kd, MulScalar(adv, cfg.AdvWeight))
		}
		t.studentAdam.UpdateGraph(st, kd.Graph(), loss)
		return []*Node{kd, adv, StopGradient(s[2])}
	})
	if cfg.AdvWeight > 0 {
		t.discLR = optimizer.LearningRateVar(root.At(DiscScope), dtypes.Float32, cfg.DiscLR)
		t.discAdam = optimizer.Adam().LearningRate(cfg.DiscLR).Done()
		t.discExec = model.MustNewExec(t.backend, t.store, func(scope *model.Scope, in []*Node) []*Node {
			ds := scope.At(DiscScope)
			real := student.Discriminator(ds, nn.NormalizeChannels(in[0]))
			fake := student.Discriminator(ds, nn.NormalizeChannels(in[1]))
			loss := MulScalar(Add(student.BCEWithLogits(real, true), student.BCEWithLogits(fake, false)), 0.5)
			t.discAdam.UpdateGraph(ds, loss.Graph(), loss)
			return []*Node{loss}
		})
	}
	t.buildScorer()
}

func (t *trainer) buildScorer() {
	cfg := t.cfg
	t.scoreExec = model.MustNewExec(t.backend, t.store, func(scope *model.Scope, in []*Node) []*Node {
		s := student.Forward(scope.At(StudentScope), cfg.Student, in[0])
		m, sc := student.AnomalyMap(s, [3]*Node{in[1], in[2], in[3]}, cfg.Size, cfg.Map)
		return []*Node{m, sc}
	})
}

func (t *trainer) run(data Dataset, progress func(Progress)) (*Result, error) {
	cfg := t.cfg
	t.build()
	n := len(data.Train)
	bs := min(cfg.BatchSize, n)
	perEpoch := n / bs
	total := perEpoch * cfg.Epochs
	if cfg.MaxSteps > 0 && (cfg.Epochs < 1 || cfg.MaxSteps < total) {
		total = cfg.MaxSteps
	}
	res := &Result{Config: cfg}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	// One generator for the whole run, advanced deterministically over the
	// skipped epochs when resuming.
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d756c7469616400))
	start := time.Now()
	lastReport := time.Time{}
	step := t.startStep
	epochs := (total + perEpoch - 1) / perEpoch
	for epoch := 0; epoch < epochs && step < total; epoch++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		var kdSum, discSum float64
		var count int
		for b := 0; b < perEpoch && step < total; b++ {
			augs := make([]Transform, bs)
			for i := range augs {
				a := &augs[i]
				a.HFlip, a.VFlip = cfg.Augment.HFlip && rng.IntN(2) == 1, cfg.Augment.VFlip && rng.IntN(2) == 1
				if sh := cfg.Augment.Shift; sh > 0 {
					a.DX, a.DY = rng.IntN(2*sh+1)-sh, rng.IntN(2*sh+1)-sh
				}
			}
			var noisy []uint64 // per image: 0, or the seed of its corruption
			if cfg.Denoise > 0 {
				noisy = make([]uint64, bs)
				for i := range noisy {
					if rng.Float64() < cfg.Denoise {
						noisy[i] = rng.Uint64() | 1
					}
				}
			}
			if epoch*perEpoch+b < t.startStep {
				continue // resumed: this step was done before
			}
			batch := make([]Sample, bs)
			for i := range batch {
				batch[i] = data.Train[order[b*bs+i]]
			}
			if err := t.augmentBatch(batch, augs, data.Teacher); err != nil {
				return nil, fmt.Errorf("train: step %d: %w", step, err)
			}
			for i, seed := range noisy {
				if seed != 0 {
					batch[i].Image = Corrupt(batch[i].Image, cfg.Size, seed)
				}
			}
			in := t.batchTensors(batch)
			if err := t.setLR(step, total); err != nil {
				return nil, fmt.Errorf("train: step %d: learning rate: %w", step, err)
			}
			out, err := t.studentExec.Call(in[0], in[1], in[2], in[3])
			if err != nil {
				return nil, fmt.Errorf("train: student step %d: %w", step, err)
			}
			kd := float64(tensors.ToScalar[float32](out[0]))
			adv := float64(tensors.ToScalar[float32](out[1]))
			var disc float64
			if t.discExec != nil {
				dout, err := t.discExec.Call(in[3], out[2])
				if err != nil {
					return nil, fmt.Errorf("train: discriminator step %d: %w", step, err)
				}
				disc = float64(tensors.ToScalar[float32](dout[0]))
			}
			if math.IsNaN(kd) || math.IsInf(kd, 0) {
				return nil, fmt.Errorf("train: KD loss is %v at step %d (lower the learning rate)", kd, step)
			}
			if step == t.startStep {
				res.FirstKDLoss = kd
			}
			kdSum += kd
			discSum += disc
			count++
			step++
			if progress != nil && (cfg.ProgressEvery == 0 || time.Since(lastReport) >= cfg.ProgressEvery || step == total) {
				lastReport = time.Now()
				el := time.Since(start)
				done := step - t.startStep
				ips := float64(done*bs) / el.Seconds()
				eta := time.Duration(float64(el) / float64(done) * float64(total-step))
				progress(Progress{Epoch: epoch + 1, Epochs: epochs, Step: step, Steps: total, KDLoss: kd, AdvLoss: adv,
					DiscLoss: disc, ImagesPerSec: ips, Elapsed: el, ETA: eta, Phase: "train"})
			}
		}
		if count > 0 {
			res.EpochKDLoss = append(res.EpochKDLoss, kdSum/float64(count))
			if t.discExec != nil {
				res.EpochDiscLoss = append(res.EpochDiscLoss, discSum/float64(count))
			}
			if cfg.Checkpoint != "" {
				if err := t.save(step); err != nil {
					return nil, err
				}
			}
		}
	}
	res.Steps = step
	return res, nil
}

func (t *trainer) setLR(step, total int) error {
	if err := t.studentLR.SetValue(tensors.FromScalar(float32(t.cfg.LearningRate(t.cfg.LR, step, total)))); err != nil {
		return err
	}
	if t.discLR != nil {
		return t.discLR.SetValue(tensors.FromScalar(float32(t.cfg.LearningRate(t.cfg.DiscLR, step, total))))
	}
	return nil
}

// augmentBatch replaces the samples of batch that augs changes by their
// transformed images, with teacher features computed for those images.
func (t *trainer) augmentBatch(batch []Sample, augs []Transform, teacher TeacherFunc) error {
	var idx []int
	var imgs [][]float32
	for i, a := range augs {
		if a != (Transform{}) {
			idx = append(idx, i)
			imgs = append(imgs, a.Apply(batch[i].Image, t.cfg.Size))
		}
	}
	if len(imgs) == 0 {
		return nil
	}
	got, err := teacher(imgs)
	if err != nil {
		return fmt.Errorf("teacher features of augmented images: %w", err)
	}
	if len(got) != len(imgs) {
		return fmt.Errorf("teacher returned %d samples for %d augmented images", len(got), len(imgs))
	}
	if err := checkSamples("augmented", got, t.cfg); err != nil {
		return err
	}
	for j, i := range idx {
		batch[i] = got[j]
	}
	return nil
}

// Transform is one augmentation of an image: flips, then a shift by (DX,
// DY) pixels (content moves right and down for positive values; the
// uncovered border repeats the edge).
type Transform struct {
	HFlip, VFlip bool
	DX, DY       int
}

// Apply returns a transformed copy of a [C, S, S] image (CHW).
func (a Transform) Apply(img []float32, S int) []float32 {
	src := func(i, d int, flip bool) int {
		i = min(max(i-d, 0), S-1)
		if flip {
			i = S - 1 - i
		}
		return i
	}
	out := make([]float32, len(img))
	for c := 0; c < len(img)/(S*S); c++ {
		for y := 0; y < S; y++ {
			row, dst := img[(c*S+src(y, a.DY, a.VFlip))*S:], out[(c*S+y)*S:]
			for x := 0; x < S; x++ {
				dst[x] = row[src(x, a.DX, a.HFlip)]
			}
		}
	}
	return out
}

// batchTensors is BatchTensors with the trainer's configuration.
func (t *trainer) batchTensors(batch []Sample) [4]*tensors.Tensor { return BatchTensors(t.cfg, batch) }

// BatchTensors converts samples (CHW) to the NHWC tensors the student's
// graphs take: images [N, S, S, 3] and the three teacher feature maps
// [N, S/stride, S/stride, C] with cfg's size and channels.
func BatchTensors(cfg Config, batch []Sample) [4]*tensors.Tensor {
	var out [4]*tensors.Tensor
	S := cfg.Size
	out[0] = tensors.FromFlatDataAndDimensions(toNHWC(batch, -1, 3, S), len(batch), S, S, 3)
	for k, st := range student.Strides {
		h := S / st
		c := cfg.Student.Channels[k]
		out[k+1] = tensors.FromFlatDataAndDimensions(toNHWC(batch, k, c, h), len(batch), h, h, c)
	}
	return out
}

// toNHWC gathers image (k < 0) or feature map k of each sample, CHW → HWC.
func toNHWC(batch []Sample, k, c, h int) []float32 {
	out := make([]float32, len(batch)*h*h*c)
	for n, s := range batch {
		src := s.Image
		if k >= 0 {
			src = s.Feats[k]
		}
		dst := out[n*h*h*c:]
		for ch := 0; ch < c; ch++ {
			plane := src[ch*h*h:]
			for i := 0; i < h*h; i++ {
				dst[i*c+ch] = plane[i]
			}
		}
	}
	return out
}

// score computes anomaly maps [N][S·S] and scores of samples with the
// current student.
func (t *trainer) score(ss []Sample) ([][]float32, []float64, error) {
	bs := min(t.cfg.BatchSize, len(ss))
	var maps [][]float32
	var scores []float64
	S := t.cfg.Size
	for i := 0; i < len(ss); i += bs {
		batch := ss[i:min(i+bs, len(ss))]
		in := t.batchTensors(batch)
		out, err := t.scoreExec.Call(in[0], in[1], in[2], in[3])
		if err != nil {
			return nil, nil, fmt.Errorf("train: scoring: %w", err)
		}
		m := tensors.MustCopyFlatData[float32](out[0])
		sc := tensors.MustCopyFlatData[float32](out[1])
		for j := range batch {
			maps = append(maps, m[j*S*S:(j+1)*S*S])
			scores = append(scores, float64(sc[j]))
		}
	}
	return maps, scores, nil
}

// Score computes anomaly maps [N][S·S] and image scores of samples in GoMLX
// with the given student weights (train.Result.Student), as the exported
// ONNX graph does.
func Score(cfg Config, weights map[string]student.Tensor, samples []Sample) (maps [][]float32, scores []float64, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	if err := checkSamples("scored", samples, cfg); err != nil {
		return nil, nil, err
	}
	if len(samples) == 0 {
		return nil, nil, nil
	}
	backend, err := NewBackend(cfg.Backend)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("train: scoring: %v", r)
		}
	}()
	store, err := StudentStore(weights)
	if err != nil {
		return nil, nil, err
	}
	t := &trainer{cfg: cfg, backend: backend, store: store}
	n := t.store.NumVariables()
	t.buildScorer()
	maps, scores, err = t.score(samples)
	if err == nil && t.store.NumVariables() != n {
		return nil, nil, fmt.Errorf("train: the weights lack %d of the student's variables", t.store.NumVariables()-n)
	}
	return maps, scores, err
}

// StudentStore returns a variable store holding the student weights
// (train.Result.Student) under StudentScope, for graphs built on
// student.Forward.
func StudentStore(weights map[string]student.Tensor) (*model.Store, error) {
	store := model.NewStore()
	for p, w := range weights {
		if len(w.Data) != prod(w.Dims) {
			return nil, fmt.Errorf("train: weight %s has %d values for shape %v", p, len(w.Data), w.Dims)
		}
		if _, err := store.CreateVariable("/"+StudentScope+p, tensors.FromFlatDataAndDimensions(w.Data, w.Dims...)); err != nil {
			return nil, fmt.Errorf("train: weight %s: %w", p, err)
		}
	}
	return store, nil
}

func prod(d []int) int {
	n := 1
	for _, v := range d {
		n *= v
	}
	return n
}

// studentWeights copies the student's trainable variables.
func (t *trainer) studentWeights() map[string]student.Tensor {
	out := map[string]student.Tensor{}
	prefix := "/" + StudentScope + "/"
	for v := range t.store.IterVariables() {
		p := v.Path()
		if !v.Trainable || !strings.HasPrefix(p, prefix) || v.DType() != dtypes.Float32 {
			continue
		}
		out[p[len(prefix)-1:]] = student.Tensor{Dims: v.Shape().Dimensions, Data: tensors.MustCopyFlatData[float32](v.MustValue())}
	}
	return out
}

// Calibrate computes thresholds and ranges from the maps and scores of
// normal images.
func Calibrate(maps [][]float32, scores []float64, q float64) Calibration {
	c := Calibration{Quantile: q, Scores: scores, MapMin: math.Inf(1), MapMax: math.Inf(-1)}
	c.ImageThreshold = Quantile(scores, q)
	c.ScoreMin, c.ScoreMax = math.Inf(1), math.Inf(-1)
	for _, s := range scores {
		c.ScoreMin = math.Min(c.ScoreMin, s)
		c.ScoreMax = math.Max(c.ScoreMax, s)
	}
	var pix []float64
	for _, m := range maps {
		for _, v := range m {
			pix = append(pix, float64(v))
			c.MapMin = math.Min(c.MapMin, float64(v))
			c.MapMax = math.Max(c.MapMax, float64(v))
		}
	}
	c.PixelThreshold = Quantile(pix, q)
	return c
}

// Quantile is the q-quantile of xs with linear interpolation between order
// statistics (numpy's default); NaN for an empty slice.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	i := int(math.Floor(pos))
	if i >= len(s)-1 {
		return s[len(s)-1]
	}
	f := pos - float64(i)
	return s[i]*(1-f) + s[i+1]*f
}
