package train

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/multiad/multiad/model/nn"
)

// patchVectors turns a sample's stride-8 and stride-16 teacher features
// (stride 16 upsampled ×2, nearest) into 3×3-averaged patch vectors at
// stride 8: [H8*W8][C8+C16].
func patchVectors(s Sample, S int, c8, c16 int) [][]float32 {
	h8, h16 := S/8, S/16
	D := c8 + c16
	raw := make([][]float32, h8*h8)
	for y := 0; y < h8; y++ {
		for x := 0; x < h8; x++ {
			v := make([]float32, D)
			for c := 0; c < c8; c++ {
				v[c] = s.Feats[1][(c*h8+y)*h8+x]
			}
			for c := 0; c < c16; c++ {
				v[c8+c] = s.Feats[2][(c*h16+y/2)*h16+x/2]
			}
			raw[y*h8+x] = v
		}
	}
	out := make([][]float32, h8*h8)
	for y := 0; y < h8; y++ {
		for x := 0; x < h8; x++ {
			v := make([]float32, D)
			n := 0
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					yy, xx := y+dy, x+dx
					if yy < 0 || xx < 0 || yy >= h8 || xx >= h8 {
						continue
					}
					for c, f := range raw[yy*h8+xx] {
						v[c] += f
					}
					n++
				}
			}
			for c := range v {
				v[c] /= float32(n)
			}
			out[y*h8+x] = v
		}
	}
	return out
}

// TestExperimentKNN is a PatchCore-style diagnostic on the teacher features
// alone (MULTIAD_EXP=1; EXP_S, EXP_BANK fraction of training patches kept,
// EXP_KNN16 for stride-16 patches alone, EXP_NTEST test images per class):
// how far the frozen MobileNetV2 features at this resolution can go on the
// magnetic tiles, independent of any student.
func TestExperimentKNN(t *testing.T) {
	S, root := tilesExperiment(t)
	frac := envF("EXP_BANK", 0.03)
	_, all := loadDir(t, filepath.Join(root, "train", "good"), S, 0)
	train := mobileNetSamples(t, all, S)
	c8 := len(train[0].Feats[1]) / ((S / 8) * (S / 8))
	c16 := len(train[0].Feats[2]) / ((S / 16) * (S / 16))
	h8 := S / 8
	vectors := func(s Sample) [][]float32 { return patchVectors(s, S, c8, c16) }
	if os.Getenv("EXP_KNN16") != "" { // stride-16 features alone, 3×3-averaged
		h8 = S / 16
		vectors = func(s Sample) [][]float32 {
			s.Feats[1] = s.Feats[2]
			return patchVectors16(s, S, c16)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var bank [][]float32
	for _, s := range train {
		for _, v := range vectors(s) {
			if rng.Float64() < frac {
				bank = append(bank, v)
			}
		}
	}
	bn := make([]float32, len(bank))
	for i, v := range bank {
		for _, f := range v {
			bn[i] += f * f
		}
	}
	t.Logf("bank %d vectors of %d dims", len(bank), len(bank[0]))
	labels, pixLabels, test, _ := tilesTestSet(t, root, S)
	start := time.Now()
	var scores, pix, raw []float64
	for j, s := range test {
		m := make([]float32, h8*h8)
		for i, q := range vectors(s) {
			var qn float32
			for _, f := range q {
				qn += f * f
			}
			best := float32(math.Inf(1))
			for b, v := range bank {
				var dot float32
				for c, f := range v {
					dot += f * q[c]
				}
				if d := qn + bn[b] - 2*dot; d < best {
					best = d
				}
			}
			m[i] = float32(math.Sqrt(math.Max(float64(best), 0)))
		}
		up := separable(m, h8, nn.BilinearMatrix(h8, S))
		up = blurMap(up, S, DefaultConfig(S).Map.Sigma)
		for _, v := range up {
			pix = append(pix, float64(v))
		}
		scores = append(scores, topMean(up, 0))
		raw = append(raw, float64(maxOf(m)))
		if j%100 == 0 {
			t.Logf("%d/%d test images, %v", j, len(test), time.Since(start))
		}
	}
	t.Logf("kNN S=%d bank %.2f: image AUROC %.4f (max before the blur %.4f), pixel AUROC %.4f", S, frac, auroc(labels, scores), auroc(labels, raw), auroc(pixLabels, pix))
}

// patchVectors16 is patchVectors on the stride-16 features alone (which
// the caller passes as Feats[1]), at stride 16.
func patchVectors16(s Sample, S, c16 int) [][]float32 {
	return patchVectors(s, S/2, c16, 0) // h = (S/2)/8 = S/16
}
