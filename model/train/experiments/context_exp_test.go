//go:build experiment

package experiments

import (
	"math"
	"strconv"
	"testing"

	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
)

// contextMap is 1 − cos between each location's channel-normalised teacher
// feature (box-averaged over (2r+1)² locations) and the image's own mean of
// those features: how far a region is from the rest of its image.
func contextMap(f []float32, h, r int) []float32 {
	P := h * h
	C := len(f) / P
	n := make([]float32, len(f))
	for p := 0; p < P; p++ {
		var s float64
		for c := 0; c < C; c++ {
			s += float64(f[c*P+p]) * float64(f[c*P+p])
		}
		s = 1 / math.Max(math.Sqrt(s), 1e-12)
		for c := 0; c < C; c++ {
			n[c*P+p] = float32(float64(f[c*P+p]) * s)
		}
	}
	if r > 0 {
		B := nn.BoxMatrix(h, r)
		for c := 0; c < C; c++ {
			copy(n[c*P:(c+1)*P], separable(n[c*P:(c+1)*P], h, B))
		}
	}
	ref := make([]float64, C)
	for c := 0; c < C; c++ {
		for p := 0; p < P; p++ {
			ref[c] += float64(n[c*P+p])
		}
	}
	var rn float64
	for _, v := range ref {
		rn += v * v
	}
	rn = math.Sqrt(rn)
	out := make([]float32, P)
	for p := 0; p < P; p++ {
		var dot, nn2 float64
		for c := 0; c < C; c++ {
			v := float64(n[c*P+p])
			dot += v * ref[c]
			nn2 += v * v
		}
		out[p] = float32(1 - dot/math.Max(math.Sqrt(nn2)*rn, 1e-12))
	}
	return out
}

// TestExperimentContext is a teacher-only diagnostic (MULTIAD_EXP=1, EXP_S):
// per-defect pixel AUROC of contextMap per scale and box radius. Large-area
// defects such as the tiles' *uneven* regions look normal locally but differ
// from the rest of their own image.
func TestExperimentContext(t *testing.T) {
	S, root := tilesExperiment(t)
	labels, pixLabels, test, classes := tilesTestSet(t, root, S)
	res := classMaps{}
	sigma := student.DefaultSigma(S)
	imgScores := map[string][]float64{}
	for j, s := range test {
		mask := pixLabels[j*S*S : (j+1)*S*S]
		fused := map[int][]float32{}
		for k, st := range student.Strides {
			h := S / st
			B := nn.BilinearMatrix(h, S)
			for _, r := range []int{2} {
				m := blurMap(separable(contextMap(s.Feats[k], h, r), h, B), S, sigma)
				name := "ctx stride " + strconv.Itoa(st) + " r" + strconv.Itoa(r)
				res.add(classes[j], name, m, mask)
				imgScores[name] = append(imgScores[name], maxOf(m))
				if k > 0 {
					if fused[r] == nil {
						fused[r] = make([]float32, len(m))
					}
					for i, v := range m {
						fused[r][i] += v
					}
				}
			}
		}
		// Raw intensity: the blurred grey level's and the local standard
		// deviation's distance from the image's own means.
		g := s.Image[:S*S]
		G := nn.GaussianMatrix(S, 4*sigma)
		mu := separable(g, S, G)
		sq := make([]float32, S*S)
		for i, v := range g {
			sq[i] = (v - mu[i]) * (v - mu[i])
		}
		sd := separable(sq, S, G)
		for i := range sd {
			sd[i] = float32(math.Sqrt(float64(sd[i])))
		}
		for _, v := range []struct {
			name string
			m    []float32
		}{{"intensity", mu}, {"local std", sd}} {
			var mean float64
			for _, x := range v.m {
				mean += float64(x)
			}
			mean /= float64(len(v.m))
			d := make([]float32, len(v.m))
			for i, x := range v.m {
				d[i] = float32(math.Abs(float64(x) - mean))
			}
			res.add(classes[j], v.name, d, mask)
			imgScores[v.name] = append(imgScores[v.name], maxOf(d))
		}
		for r, m := range fused {
			name := "ctx 8+16 r" + strconv.Itoa(r)
			res.add(classes[j], name, m, mask)
			imgScores[name] = append(imgScores[name], maxOf(m))
		}
	}
	res.report(t)
	for v, sc := range imgScores {
		t.Logf("%s: image AUROC %.4f", v, auroc(labels, sc))
	}
}

func maxOf(m []float32) float64 {
	v := math.Inf(-1)
	for _, x := range m {
		v = math.Max(v, float64(x))
	}
	return v
}
