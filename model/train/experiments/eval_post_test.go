//go:build experiment

package experiments

import (
	"math"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

// blurMap applies the separable Gaussian of nn.GaussianMatrix to an S×S map.
func blurMap(m []float32, S int, sigma float64) []float32 {
	if sigma <= 0 {
		return m
	}
	return separable(m, S, nn.GaussianMatrix(S, sigma))
}

// separable returns W·M·Wᵀ for an h×h map M and a [n][h] matrix W: an n×n map
// (nn.SeparableGo in float32).
func separable(m []float32, h int, w [][]float64) []float32 {
	n := len(w)
	acc := make([]float64, n*n)
	nn.SeparableGo(m, h, w, acc)
	out := make([]float32, n*n)
	for i, v := range acc {
		out[i] = float32(v)
	}
	return out
}

func topMean(m []float32, frac float64) float64 {
	if frac <= 0 {
		return maxOf(m)
	}
	s := append([]float32(nil), m...)
	sort.Slice(s, func(i, j int) bool { return s[i] > s[j] })
	return topMeanSorted(s, frac)
}

// topMeanSorted is the mean of the largest frac (at least one) of s, sorted
// in descending order.
func topMeanSorted(s []float32, frac float64) float64 {
	k := max(1, int(frac*float64(len(s))))
	var a float64
	for _, v := range s[:k] {
		a += float64(v)
	}
	return a / float64(k)
}

// TestExperimentPost trains once on magnetic-tile normals (every 10th held
// out) and compares post-processing of the per-scale maps: fusion weights,
// per-scale normalisation by validation statistics (global or per
// location), and max versus top-k image scores (MULTIAD_EXP=1; EXP_HARD for
// hard-feature mining, EXP_NTRAIN training images, EXP_NTEST test images per
// class, other EXP_* as in experimentConfig).
func TestExperimentPost(t *testing.T) {
	S, root := tilesExperiment(t)
	_, all := loadDir(t, filepath.Join(root, "train", "good"), S, int(envF("EXP_NTRAIN", 0)))
	var trImgs, valImgs [][]float32
	for i, x := range all {
		if i%10 == 9 {
			valImgs = append(valImgs, x)
		} else {
			trImgs = append(trImgs, x)
		}
	}
	normals := mobileNetSamples(t, trImgs, S)
	val := mobileNetSamples(t, valImgs, S)
	cfg := experimentConfig(S)
	for k, st := range student.Strides {
		cfg.Student.Channels[k] = len(normals[0].Feats[k]) / ((S / st) * (S / st))
	}
	cfg.ProgressEvery = 60 * time.Second
	start := time.Now()
	res, err := train.Train(cfg, train.Dataset{Train: normals, Val: val, Teacher: mobileNetTeacher(t, S)}, func(p train.Progress) { t.Log(train.Line(p)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("trained %d images (%d val) in %v, hard %g", len(normals), len(val), time.Since(start), cfg.HardMining)
	labels, pixLabels, test, _ := tilesTestSet(t, root, S)
	// Unblurred per-scale maps [scale][image][S*S].
	perScale := func(ss []train.Sample) (out [3][][]float32) {
		for k := 0; k < 3; k++ {
			c := cfg
			w := [3]float64{}
			w[k] = 1
			c.Map = student.MapConfig{Fuse: "sum", Weights: w}
			maps, _, err := train.Score(c, res.Student, ss)
			if err != nil {
				t.Fatal(err)
			}
			out[k] = maps
		}
		return out
	}
	vm, tm := perScale(val), perScale(test)
	P := S * S
	// Validation statistics per scale: global mean/std and per-location mean/std.
	var gMean, gStd [3]float64
	var lMean, lStd [3][]float64
	for k := 0; k < 3; k++ {
		lMean[k], lStd[k] = make([]float64, P), make([]float64, P)
		for _, m := range vm[k] {
			for i, v := range m {
				lMean[k][i] += float64(v)
				lStd[k][i] += float64(v) * float64(v)
			}
		}
		n := float64(len(vm[k]))
		var s1, s2 float64
		for i := range lMean[k] {
			s1 += lMean[k][i]
			s2 += lStd[k][i]
			lMean[k][i] /= n
			lStd[k][i] = math.Sqrt(math.Max(lStd[k][i]/n-lMean[k][i]*lMean[k][i], 0))
		}
		gMean[k] = s1 / (n * float64(P))
		gStd[k] = math.Sqrt(s2/(n*float64(P)) - gMean[k]*gMean[k])
	}
	sig := cfg.Map.Sigma
	type variant struct {
		name string
		w    [3]float64
		norm string // "", "global", "locmean", "locz"
	}
	fuse := func(v variant, maps [3][][]float32, j int) []float32 {
		out := make([]float32, P)
		for k := 0; k < 3; k++ {
			if v.w[k] == 0 {
				continue
			}
			for i, x := range maps[k][j] {
				f := float64(x)
				switch v.norm {
				case "global":
					f = (f - gMean[k]) / gStd[k]
				case "locmean":
					f = (f - lMean[k][i]) / gStd[k]
				case "locz":
					f = (f - lMean[k][i]) / math.Sqrt(lStd[k][i]*lStd[k][i]+0.25*gStd[k]*gStd[k])
				}
				out[i] += float32(v.w[k] * f)
			}
		}
		return blurMap(out, S, sig)
	}
	for _, v := range []variant{
		{"default .25/.5/1", train.DefaultScaleWeights, ""},
		{"s16", [3]float64{0, 0, 1}, ""},
		{"s8+s16", [3]float64{0, 1, 1}, ""},
		{"global-z all", [3]float64{1, 1, 1}, "global"},
		{"global-z s8+s16", [3]float64{0, 1, 1}, "global"},
		{"locmean all", [3]float64{1, 1, 1}, "locmean"},
		{"locmean s8+s16", [3]float64{0, 1, 1}, "locmean"},
		{"locmean s16", [3]float64{0, 0, 1}, "locmean"},
		{"locz all", [3]float64{1, 1, 1}, "locz"},
		{"locz s8+s16", [3]float64{0, 1, 1}, "locz"},
		{"locz s16", [3]float64{0, 0, 1}, "locz"},
	} {
		var pix []float64
		var smax, s1, s01 []float64
		for j := range labels {
			m := fuse(v, tm, j)
			for _, x := range m {
				pix = append(pix, float64(x))
			}
			smax = append(smax, topMean(m, 0))
			s1 = append(s1, topMean(m, 0.01))
			s01 = append(s01, topMean(m, 0.001))
		}
		t.Logf("%-18s image AUROC max %.4f top0.1%% %.4f top1%% %.4f | pixel AUROC %.4f", v.name,
			auroc(labels, smax), auroc(labels, s01), auroc(labels, s1), auroc(validOnly(pixLabels, pix)))
	}
}
