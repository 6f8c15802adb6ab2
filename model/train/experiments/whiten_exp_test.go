//go:build experiment

package experiments

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

// residualStats accumulates the mean and covariance of C-dim vectors.
type residualStats struct {
	c   int
	n   float64
	sum []float64
	sq  []float64 // c×c
}

func newResidualStats(c int) *residualStats {
	return &residualStats{c: c, sum: make([]float64, c), sq: make([]float64, c*c)}
}

func (s *residualStats) add(v []float32) {
	s.n++
	for i, a := range v {
		s.sum[i] += float64(a)
		row := s.sq[i*s.c:]
		for j := 0; j <= i; j++ {
			row[j] += float64(a) * float64(v[j])
		}
	}
}

// whitener returns the mean and the lower Cholesky factor of the
// covariance (ridge-regularised), plus the diagonal variances.
func (s *residualStats) whitener(ridge float64) (mu, l, vars []float64) {
	c := s.c
	mu = make([]float64, c)
	for i := range mu {
		mu[i] = s.sum[i] / s.n
	}
	cov := make([]float64, c*c)
	var tr float64
	for i := 0; i < c; i++ {
		for j := 0; j <= i; j++ {
			v := s.sq[i*c+j]/s.n - mu[i]*mu[j]
			cov[i*c+j], cov[j*c+i] = v, v
		}
		tr += cov[i*c+i]
	}
	vars = make([]float64, c)
	for i := 0; i < c; i++ {
		cov[i*c+i] += ridge * tr / float64(c)
		vars[i] = cov[i*c+i]
	}
	l = make([]float64, c*c)
	for i := 0; i < c; i++ {
		for j := 0; j <= i; j++ {
			v := cov[i*c+j]
			for k := 0; k < j; k++ {
				v -= l[i*c+k] * l[j*c+k]
			}
			if i == j {
				l[i*c+i] = math.Sqrt(v)
			} else {
				l[i*c+j] = v / l[j*c+j]
			}
		}
	}
	return mu, l, vars
}

// mahalanobis returns (v−mu)ᵀ Σ⁻¹ (v−mu) / c with Σ = l lᵀ.
func mahalanobis(v []float32, mu, l []float64, z []float64) float64 {
	c := len(mu)
	var d float64
	for i := 0; i < c; i++ {
		x := float64(v[i]) - mu[i]
		for k := 0; k < i; k++ {
			x -= l[i*c+k] * z[k]
		}
		z[i] = x / l[i*c+i]
		d += z[i] * z[i]
	}
	return d / float64(c)
}

// TestExperimentWhiten scores the tiles' test set with the student of
// checkpoint EXP_CKPT, comparing the cosine distance with the residual
// r = n(S) − n(T) whitened by its mean and covariance over the training
// normals (diagonal or full), per scale, pooled 1/5/1 (MULTIAD_EXP=1).
func TestExperimentWhiten(t *testing.T) {
	tr, root := checkpointExperiment(t)
	S := tr.cfg.Size
	pool := [3]int{0, 2, 0}
	if os.Getenv("EXP_NOPOOL") != "" {
		pool = [3]int{}
	}
	run := studentRunner(t, tr, func(s, te [3]*graph.Node) []*graph.Node {
		var out []*graph.Node
		for k := range s {
			out = append(out, graph.Sub(nn.NormalizeChannels(nn.BoxPool(s[k], pool[k])), nn.NormalizeChannels(nn.BoxPool(te[k], pool[k]))))
		}
		return out
	})
	// residuals calls f(image index, scale, h, c, flat NHWC residual of one image).
	residuals := func(samples []train.Sample, f func(i, k, h, c int, r []float32)) {
		run(samples, func(first int, outs [][]float32) {
			for k, flat := range outs {
				h := S / student.Strides[k]
				c := tr.cfg.Student.Channels[k]
				for n := 0; n < len(flat)/(h*h*c); n++ {
					f(first+n, k, h, c, flat[n*h*h*c:(n+1)*h*h*c])
				}
			}
		})
	}
	var stats [3]*residualStats
	for k := range stats {
		stats[k] = newResidualStats(tr.cfg.Student.Channels[k])
	}
	_, fitImgs := loadDir(t, filepath.Join(root, "train", "good"), S, int(envF("EXP_NFIT", 0)))
	for lo := 0; lo < len(fitImgs); lo += 64 {
		fit := mobileNetSamples(t, fitImgs[lo:min(lo+64, len(fitImgs))], S)
		residuals(fit, func(_, k, h, c int, r []float32) {
			for p := 0; p < h*h; p++ {
				stats[k].add(r[p*c : (p+1)*c])
			}
		})
	}
	ridge := envF("EXP_RIDGE", 0.01)
	type whit struct{ mu, l, vars []float64 }
	var w [3]whit
	for k := range w {
		w[k].mu, w[k].l, w[k].vars = stats[k].whitener(ridge)
	}
	labels, pixLabels, test, classes := tilesTestSet(t, root, S)
	kinds := []string{"cos", "diag", "full"}
	// raw[kind][scale][image]: h×h map.
	raw := make([][3][][]float32, len(kinds))
	for q := range raw {
		for k := range 3 {
			raw[q][k] = make([][]float32, len(test))
		}
	}
	z := make([]float64, slices.Max(tr.cfg.Student.Channels[:])) // mahalanobis's scratch
	residuals(test, func(i, k, h, c int, r []float32) {
		for q := range kinds {
			raw[q][k][i] = make([]float32, h*h)
		}
		for p := 0; p < h*h; p++ {
			v := r[p*c : (p+1)*c]
			var cs, dg float64
			for j, a := range v {
				cs += float64(a) * float64(a)
				d := float64(a) - w[k].mu[j]
				dg += d * d / w[k].vars[j]
			}
			raw[0][k][i][p] = float32(cs / 2)
			raw[1][k][i][p] = float32(dg / float64(c))
			raw[2][k][i][p] = float32(mahalanobis(v, w[k].mu, w[k].l, z))
		}
	})
	sigma := student.DefaultSigma(S)
	for q, kind := range kinds {
		for _, wt := range [][3]float64{{0.25, 0.5, 1}, {1, 1, 1}, {0, 0.25, 1}, {0, 0, 1}, {0, 1, 0}, {1, 0, 0}} {
			name := kind + " weights " + strconv.FormatFloat(wt[0], 'g', 3, 64) + "/" + strconv.FormatFloat(wt[1], 'g', 3, 64) + "/" + strconv.FormatFloat(wt[2], 'g', 3, 64)
			var mx []float64
			var pix []float32
			var lab []bool
			res := classMaps{}
			for i := range test {
				m := make([]float32, S*S)
				for k, st := range student.Strides {
					if wt[k] == 0 {
						continue
					}
					h := S / st
					up := separable(raw[q][k][i], h, nn.BilinearMatrix(h, S))
					for p, x := range up {
						m[p] += float32(wt[k]) * x
					}
				}
				m = blurMap(m, S, sigma)
				mx = append(mx, maxOf(m))
				pix, lab = appendHalfRes(pix, lab, m, pixLabels[i*S*S:(i+1)*S*S])
				res.add(classes[i], name, m, pixLabels[i*S*S:(i+1)*S*S])
			}
			t.Log(name + ": image AUROC " + f4(auroc(labels, mx)) + ", pixel AUROC " + f4(auroc(lab, float64s(pix))) + "; per class:" + perClassImageAUROC(labels, classes, mx))
			if os.Getenv("EXP_PERCLASS") != "" {
				res.report(t)
			}
		}
	}
}
