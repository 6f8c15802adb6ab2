//go:build experiment

package experiments

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/train/optimizer"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/raster"
	"github.com/multiad/multiad/model/bank"
	"github.com/multiad/multiad/model/export"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/model/train"
	"github.com/multiad/multiad/pipelines/training"
)

// aeConfig is the global-context autoencoder of TestExperimentAutoencoder.
type aeConfig struct {
	H, D   int // input grid (S/8) and channels of the patch embedding
	Width  int // channels of the encoder's and decoder's hidden maps
	Latent int // length of the global bottleneck vector (1×1×Latent)
}

// aeForward maps standardised patch embeddings x [N, H, H, D] through a
// global bottleneck back to [N, H, H, D]: three stride-2 2×2 convolutions
// (H → H/8), a dense layer to the 1×1×Latent code (the whole image in one
// vector), a dense layer back to H/8 × H/8 × Width, then bilinear
// upsampling + 3×3 convolution to H/4 and H/2, a 1×1 convolution to D
// channels and a bilinear upsampling to H (EfficientAD's autoencoder,
// smaller, on teacher features instead of pixels).
func aeForward(scope *model.Scope, c aeConfig, x *Node) *Node {
	g := x.Graph()
	n := x.Shape().Dimensions[0]
	down := func(name string, h *Node, cout int) *Node {
		cin := h.Shape().Dimensions[3]
		s := scope.At("%s", name)
		w := nn.Normal(s, "kernel", math.Sqrt(2/float64(4*cin)), 2, 2, cin, cout).NodeValue(g)
		return nn.Relu(nn.AddBias(nn.Conv2D(h, w, 2, nn.Padding{}), nn.Constant(s, "bias", 0, cout).NodeValue(g)))
	}
	h := down("enc0", x, c.Width/2)
	h = down("enc1", h, c.Width)
	h = down("enc2", h, c.Width)
	q := c.H / 8
	z := nn.Dense(scope.At("code"), Reshape(h, n, q*q*c.Width), c.Latent, 1)
	h = Reshape(nn.Relu(nn.Dense(scope.At("decode"), z, q*q*c.Width, 1)), n, q, q, c.Width)
	h = upsampleNHWC(h, 2*q)
	h = nn.Relu(nn.ConvLayer(scope.At("dec0"), h, c.Width, 3, 1, true, 1))
	h = upsampleNHWC(h, 4*q)
	h = nn.Relu(nn.ConvLayer(scope.At("dec1"), h, c.Width, 3, 1, true, 1))
	h = nn.ConvLayer(scope.At("out"), h, c.D, 1, 1, true, 1)
	return upsampleNHWC(h, c.H)
}

// upsampleNHWC resizes NHWC maps to out×out bilinearly (half-pixel
// centres, nn.BilinearMatrix).
func upsampleNHWC(x *Node, out int) *Node {
	d := x.Shape().Dimensions
	g := x.Graph()
	mat := func(in int) *Node {
		return Reshape(Const(g, nn.Flat32(nn.BilinearMatrix(in, out))), out, in)
	}
	y := Einsum("nhwc,Ww->nhWc", x, mat(d[2]))
	return Einsum("nhWc,Hh->nHWc", y, mat(d[1]))
}

// aeData is the input and target of the autoencoder for one image: the
// patch embedding standardised per channel (input) and L2-normalised per
// location (target, as the student's target), both [H·H·D] row-major
// (NHWC without the batch axis).
type aeData struct{ in, target []float32 }

// aeStats is the per-channel mean and standard deviation of the training
// normals' patch embeddings.
type aeStats struct{ mean, std []float64 }

// embedAll returns the patch embedding (bank.Embed) of each sample or,
// with s16, its stride-16 features 3×3-averaged (bank.BoxMatrix), [H·H·D]
// row-major.
func embedAll(t testing.TB, ss []train.Sample, S int, s16 bool) [][]float32 {
	out := make([][]float32, len(ss))
	for i, s := range ss {
		if s16 {
			h := S / 16
			C := len(s.Feats[2]) / (h * h)
			box := bank.BoxMatrix(h)
			e := make([]float32, h*h*C)
			plane := make([]float64, h*h)
			for c := 0; c < C; c++ {
				nn.SeparableGo(s.Feats[2][c*h*h:(c+1)*h*h], h, box, plane)
				for p, v := range plane {
					e[p*C+c] = float32(v)
				}
			}
			out[i] = e
			continue
		}
		e, err := bank.Embed(s.Feats[1], s.Feats[2], S)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = e
	}
	return out
}

func channelStats(emb [][]float32, D int) aeStats {
	s := aeStats{make([]float64, D), make([]float64, D)}
	var n float64
	for _, e := range emb {
		for i, v := range e {
			s.mean[i%D] += float64(v)
			s.std[i%D] += float64(v) * float64(v)
		}
		n += float64(len(e) / D)
	}
	for c := range s.mean {
		s.mean[c] /= n
		s.std[c] = math.Sqrt(math.Max(s.std[c]/n-s.mean[c]*s.mean[c], 0)) + 1e-6
	}
	return s
}

func (st aeStats) data(e []float32) aeData {
	D := len(st.mean)
	d := aeData{make([]float32, len(e)), make([]float32, len(e))}
	for p := 0; p < len(e)/D; p++ {
		v := e[p*D : (p+1)*D]
		var nrm float64
		for c, f := range v {
			d.in[p*D+c] = float32((float64(f) - st.mean[c]) / st.std[c])
			nrm += float64(f) * float64(f)
		}
		nrm = 1 / math.Max(math.Sqrt(nrm), 1e-12)
		for c, f := range v {
			d.target[p*D+c] = float32(float64(f) * nrm)
		}
	}
	return d
}

func aeBatch(ds []aeData, H, D int) (in, target *tensors.Tensor) {
	var a, b []float32
	for _, d := range ds {
		a, b = append(a, d.in...), append(b, d.target...)
	}
	return tensors.FromFlatDataAndDimensions(a, len(ds), H, H, D), tensors.FromFlatDataAndDimensions(b, len(ds), H, H, D)
}

// loadTensors decodes the .jpg files of dir (sorted by name) and
// preprocesses them as the bundle m does.
func loadTensors(t testing.TB, m *inference.Model, dir string) (names []string, imgs [][]float32) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".jpg") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		ims, err := raster.Decode(data, pixels.DefaultLimits)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		x, err := m.Preprocess(ims[0])
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		imgs = append(imgs, x)
	}
	return names, imgs
}

// pixelStats is the mean and standard deviation of every pixel of maps (the
// fused head's statistics of held-out normal maps).
func pixelStats(maps [][]float32) export.Norm {
	var s1, s2, n float64
	for _, m := range maps {
		for _, v := range m {
			s1 += float64(v)
			s2 += float64(v) * float64(v)
		}
		n += float64(len(m))
	}
	mean := s1 / n
	return export.Norm{Mean: mean, Std: math.Sqrt(math.Max(s2/n-mean*mean, 0))}
}

// TestExperimentAutoencoder measures a global-context head (issue 17): an
// autoencoder through a 1×1 bottleneck on the teacher's patch embedding
// (bank.Embed: strides 8 + 16, 3×3-averaged), trained on the tiles'
// training normals, whose per-location squared error is an anomaly map
// (bank.Map: upsampled and blurred like the bank head's). It is compared
// with, and fused with, the bank head of bundle EXP_BUNDLE (read-only; its
// teacher, preprocessing and held-out split are reused: the autoencoder
// trains on the bundle's training images, and both heads' maps are
// standardised by the mean and standard deviation of the held-out normals'
// pixels, as the fused head does). MULTIAD_EXP=1; EXP_AE_STEPS (2000),
// EXP_AE_B (8), EXP_AE_LR (1e-3, cosine decay), EXP_AE_W (64 hidden
// channels), EXP_AE_Z (64 latent), EXP_AE_INPUT=s16 for the stride-16
// features alone (3×3-averaged, 16×16×96 at 256 px) instead of the patch
// embedding, EXP_NTEST test images per class.
func TestExperimentAutoencoder(t *testing.T) {
	_, root := tilesExperiment(t)
	uri := os.Getenv("EXP_BUNDLE")
	if uri == "" {
		t.Skip("set EXP_BUNDLE")
	}
	bm, err := inference.Load(context.Background(), uri, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer bm.Close()
	man := bm.Bundle.Manifest
	S := bm.Size()
	tname := man.Teacher.Name
	if tname == "" {
		tname = teacher.MobileNetV2
	}
	tch, err := training.LoadTeacher(tname, nil)
	if err != nil {
		t.Fatal(err)
	}
	tonnx, err := tch.FeaturesONNX()
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewSession(tonnx, []string{teacher.InputImage}, teacher.FeatureOutputs[:], ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	feats := func(imgs [][]float32) []train.Sample {
		ss, err := train.TeacherFeatures(sess, imgs, S, 8)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}

	// The bundle's split (pipelines/training: sorted, shuffled with the
	// seed, the first round(10%) held out).
	start := time.Now()
	_, all := loadTensors(t, bm, filepath.Join(root, "train", "good"))
	rng := rand.New(rand.NewPCG(1, 0x6d756c7469616421))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	nVal := int(math.Round(0.1 * float64(len(all))))
	valSet, trainSet := feats(all[:nVal]), feats(all[nVal:])
	t.Logf("teacher %s, %d train + %d held-out normals at %d px (resize %q) in %v", tname, len(trainSet), len(valSet), S, man.Preprocess.Resize, time.Since(start))

	s16 := os.Getenv("EXP_AE_INPUT") == "s16"
	trEmb := embedAll(t, trainSet, S, s16)
	H := S / 8
	if s16 {
		H = S / 16
	}
	D := len(trEmb[0]) / (H * H)
	stats := channelStats(trEmb, D)
	trData := make([]aeData, len(trEmb))
	for i, e := range trEmb {
		trData[i] = stats.data(e)
	}
	cfg := aeConfig{H: H, D: D, Width: int(envF("EXP_AE_W", 64)), Latent: int(envF("EXP_AE_Z", 64))}

	// Training.
	backend, err := train.NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	store := model.NewStore()
	store.SetParam(nn.SeedParam, 1)
	lr0 := envF("EXP_AE_LR", 1e-3)
	lrVar := optimizer.LearningRateVar(store.RootScope().At("ae"), dtypes.Float32, lr0)
	adam := optimizer.Adam().LearningRate(lr0).Done()
	step := model.MustNewExec(backend, store, func(scope *model.Scope, in []*Node) []*Node {
		s := scope.At("ae")
		out := aeForward(s, cfg, in[0])
		loss := ReduceAllMean(ReduceSum(Square(Sub(out, in[1])), -1))
		adam.UpdateGraph(s, loss.Graph(), loss)
		return []*Node{loss}
	})
	errExec := model.MustNewExec(backend, store, func(scope *model.Scope, in []*Node) []*Node {
		out := aeForward(scope.At("ae"), cfg, in[0])
		return []*Node{ReduceSum(Square(Sub(out, in[1])), -1)} // [N, H, H]
	})
	steps, bs := int(envF("EXP_AE_STEPS", 2000)), int(envF("EXP_AE_B", 8))
	order := make([]int, len(trData))
	for i := range order {
		order[i] = i
	}
	srng := rand.New(rand.NewPCG(1, 2))
	start = time.Now()
	var lossSum float64
	pos := len(order)
	for k := 0; k < steps; k++ {
		batch := make([]aeData, bs)
		for i := range batch {
			if pos == len(order) {
				srng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
				pos = 0
			}
			batch[i] = trData[order[pos]]
			pos++
		}
		if err := lrVar.SetValue(tensors.FromScalar(float32(lr0 * 0.5 * (1 + math.Cos(math.Pi*float64(k)/float64(steps)))))); err != nil {
			t.Fatal(err)
		}
		in, tg := aeBatch(batch, H, D)
		out, err := step.Call(in, tg)
		if err != nil {
			t.Fatal(err)
		}
		l := float64(tensors.ToScalar[float32](out[0]))
		if math.IsNaN(l) || math.IsInf(l, 0) {
			t.Fatalf("loss %v at step %d", l, k)
		}
		lossSum += l
		if (k+1)%100 == 0 || k == 0 {
			t.Logf("step %d/%d loss %.5f (mean of the last %d), %v", k+1, steps, lossSum/float64(min(100, k+1)), min(100, k+1), time.Since(start).Round(time.Second))
			lossSum = 0
		}
	}
	t.Logf("autoencoder %+v: %d steps of batch %d in %v", cfg, steps, bs, time.Since(start).Round(time.Second))

	var mapCfg struct{ Sigma float64 }
	if man.Training == nil || json.Unmarshal(man.Training.Map, &mapCfg) != nil {
		t.Fatal("the bundle's model.json has no training map settings")
	}
	sigma := mapCfg.Sigma
	// aeMaps returns the autoencoder's S×S maps of samples.
	aeMaps := func(ss []train.Sample) [][]float32 {
		var maps [][]float32
		for i := 0; i < len(ss); i += 8 {
			var batch []aeData
			for _, e := range embedAll(t, ss[i:min(i+8, len(ss))], S, s16) {
				batch = append(batch, stats.data(e))
			}
			in, tg := aeBatch(batch, H, D)
			out, err := errExec.Call(in, tg)
			if err != nil {
				t.Fatal(err)
			}
			errs := tensors.MustCopyFlatData[float32](out[0])
			for j := range batch {
				e := errs[j*H*H : (j+1)*H*H]
				if H == S/8 {
					maps = append(maps, bank.Map(e, S, sigma))
				} else {
					maps = append(maps, blurMap(separable(e, H, nn.BilinearMatrix(H, S)), S, sigma))
				}
			}
		}
		return maps
	}
	valAE := aeMaps(valSet)
	valBank, valScores := scoreAll(t, bm, valSet)
	// The bundle was calibrated on the same held-out normals: their score
	// range must be the manifest's.
	lo, hi := slices.Min(valScores), slices.Max(valScores)
	if math.Abs(float64(lo)-man.Scores.Min) > 1e-3*math.Abs(man.Scores.Min) || math.Abs(float64(hi)-man.Scores.Max) > 1e-3*math.Abs(man.Scores.Max) {
		t.Fatalf("held-out normals score in [%g, %g], the bundle's calibration [%g, %g]: not the bundle's split", lo, hi, man.Scores.Min, man.Scores.Max)
	}
	norms := [2]export.Norm{pixelStats(valAE), pixelStats(valBank)}
	t.Logf("held-out normal pixels: autoencoder mean %.4g std %.4g, bank mean %.4g std %.4g (σ %g px)", norms[0].Mean, norms[0].Std, norms[1].Mean, norms[1].Std, sigma)

	// Test set.
	var labels, pixLabels []bool
	var classes []string
	var test []train.Sample
	dirs, err := os.ReadDir(filepath.Join(root, "test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range dirs {
		names, imgs := loadTensors(t, bm, filepath.Join(root, "test", c.Name()))
		if k := int(envF("EXP_NTEST", 0)); k > 0 && len(names) > k {
			names, imgs = names[:k], imgs[:k]
		}
		test = append(test, feats(imgs)...)
		for _, n := range names {
			classes = append(classes, c.Name())
			labels = append(labels, c.Name() != "good")
			if c.Name() == "good" {
				pixLabels = append(pixLabels, make([]bool, S*S)...)
			} else {
				pixLabels = append(pixLabels, maskAt(t, filepath.Join(root, "ground_truth", c.Name(), strings.TrimSuffix(n, ".jpg")+"_mask.png"), S)...)
			}
		}
	}
	variants := []string{"a autoencoder", "b bank (bundle)", "c fused 1:1", "d fused 0.5 ae : 1 bank"}
	res := classMaps{}
	scores := make([][]float64, len(variants))
	// Within-image AUROC of the defect pixels against the normal pixels of
	// the same class's images (as TestExperimentGlobal), per variant.
	own := make([]map[string][2][]float64, len(variants))
	for v := range own {
		own[v] = map[string][2][]float64{}
	}
	start = time.Now()
	for i := 0; i < len(test); i += 8 {
		batch := test[i:min(i+8, len(test))]
		am := aeMaps(batch)
		bkm, _ := scoreAll(t, bm, batch)
		for j := range batch {
			idx := i + j
			mask := pixLabels[idx*S*S : (idx+1)*S*S]
			half := make([]float32, S*S)
			for p, v := range am[j] {
				half[p] = float32((float64(v) - norms[0].Mean) / norms[0].Std * 0.5)
			}
			for p, v := range bkm[j] {
				half[p] += float32((float64(v) - norms[1].Mean) / norms[1].Std)
			}
			for v, mp := range [][]float32{am[j], bkm[j], export.Fuse(am[j], bkm[j], norms), half} {
				res.add(classes[idx], variants[v], mp, mask)
				scores[v] = append(scores[v], maxOf(mp))
				pix, lab := appendHalfRes(nil, nil, mp, mask)
				e := own[v][classes[idx]]
				for q, x := range pix {
					if lab[q] {
						e[0] = append(e[0], float64(x))
					} else {
						e[1] = append(e[1], float64(x))
					}
				}
				own[v][classes[idx]] = e
			}
		}
		if i%80 == 0 {
			t.Logf("%d/%d test images, %v", i, len(test), time.Since(start).Round(time.Second))
		}
	}
	for v, name := range variants {
		line := name + ": image AUROC " + f4(auroc(labels, scores[v])) + "; per class" + perClassImageAUROC(labels, classes, scores[v]) + "; own-image pixel AUROC"
		for _, c := range []string{"blowhole", "break", "crack", "fray", "uneven"} {
			if e := own[v][c]; len(e[0]) > 0 {
				line += " " + c + " " + f4(aurocPosNeg(e[0], e[1]))
			}
		}
		t.Log(line)
	}
	t.Log("pixel AUROC (half resolution), each class's defect pixels against the good images' pixels, and all:")
	res.report(t)
}
