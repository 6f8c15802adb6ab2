//go:build experiment

package experiments

import (
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
)

// TestExperimentTeacherStats is a teacher-only diagnostic (MULTIAD_EXP=1,
// EXP_S): per scale, how well a per-channel Gaussian of the normals' teacher
// features (global over locations) and the per-pixel feature norm separate
// defect pixels, per defect type — what the cosine distance, blind to
// magnitude, cannot see.
func TestExperimentTeacherStats(t *testing.T) {
	S, root := tilesExperiment(t)
	_, all := loadDir(t, filepath.Join(root, "train", "good"), S, int(envF("EXP_NTRAIN", 0)))
	normals := mobileNetSamples(t, all, S)
	var mean, std [3][]float64
	var nmean, nstd [3]float64
	for k, st := range student.Strides {
		h := S / st
		P := h * h
		C := len(normals[0].Feats[k]) / P
		mean[k], std[k] = make([]float64, C), make([]float64, C)
		var n float64
		for _, s := range normals {
			for p := 0; p < P; p++ {
				var nn2 float64
				for c := 0; c < C; c++ {
					v := float64(s.Feats[k][c*P+p])
					mean[k][c] += v
					std[k][c] += v * v
					nn2 += v * v
				}
				nn2 = math.Sqrt(nn2)
				nmean[k] += nn2
				nstd[k] += nn2 * nn2
				n++
			}
		}
		for c := range mean[k] {
			mean[k][c] /= n
			std[k][c] = math.Sqrt(math.Max(std[k][c]/n-mean[k][c]*mean[k][c], 1e-12))
		}
		nmean[k] /= n
		nstd[k] = math.Sqrt(nstd[k]/n - nmean[k]*nmean[k])
	}
	_, pixLabels, test, classes := tilesTestSet(t, root, S)
	res := classMaps{}
	sigma := student.DefaultSigma(S)
	for j, s := range test {
		mask := pixLabels[j*S*S : (j+1)*S*S]
		for k, st := range student.Strides {
			h := S / st
			P := h * h
			C := len(mean[k])
			g := make([]float32, P)
			nz := make([]float32, P)
			for p := 0; p < P; p++ {
				var d, nn2 float64
				for c := 0; c < C; c++ {
					v := float64(s.Feats[k][c*P+p])
					z := (v - mean[k][c]) / std[k][c]
					d += z * z
					nn2 += v * v
				}
				g[p] = float32(d / float64(C))
				nz[p] = float32(math.Abs(math.Sqrt(nn2)-nmean[k]) / nstd[k])
			}
			B := nn.BilinearMatrix(h, S)
			for _, v := range []struct {
				name string
				m    []float32
			}{{"gauss", g}, {"normdev", nz}} {
				res.add(classes[j], v.name+" stride "+strconv.Itoa(st), blurMap(separable(v.m, h, B), S, sigma), mask)
			}
		}
	}
	res.report(t)
}

// classMaps collects map values and pixel labels per variant and class
// ("all" as well) for per-defect pixel AUROC, at every second row and column
// of the S×S maps (the reference points' half resolution; a quarter of the
// memory).
type classMaps map[string]map[string]*classAcc

type classAcc struct {
	pix []float32
	lab []bool
}

func (r classMaps) add(class, variant string, m []float32, mask []bool) {
	if r[variant] == nil {
		r[variant] = map[string]*classAcc{}
	}
	for _, c := range []string{class, "all"} {
		a := r[variant][c]
		if a == nil {
			a = &classAcc{}
			r[variant][c] = a
		}
		a.pix, a.lab = appendHalfRes(a.pix, a.lab, m, mask)
	}
}

// appendHalfRes appends every other row's every other pixel of the square
// map m and of its mask to pix and lab: pixel AUROC at half resolution.
func appendHalfRes(pix []float32, lab []bool, m []float32, mask []bool) ([]float32, []bool) {
	S := int(math.Sqrt(float64(len(m))))
	for y := 0; y < S; y += 2 {
		for x := 0; x < S; x += 2 {
			pix = append(pix, m[y*S+x])
			lab = append(lab, mask[y*S+x])
		}
	}
	return pix, lab
}

// float64s converts v to float64.
func float64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// report logs, per variant, each defect class's pixel AUROC against every
// good image's pixels, and "all" over the whole test set.
func (r classMaps) report(t testing.TB) {
	for _, v := range slices.Sorted(maps.Keys(r)) {
		byClass := r[v]
		line := v + ":"
		for _, c := range slices.Sorted(maps.Keys(byClass)) {
			if c == "good" {
				continue
			}
			a := byClass[c]
			pix, lab := float64s(a.pix), a.lab
			if c != "all" {
				g := byClass["good"]
				for _, v := range g.pix {
					pix = append(pix, float64(v))
				}
				lab = append(append([]bool(nil), lab...), g.lab...)
			}
			line += " " + c + " " + strconv.FormatFloat(auroc(lab, pix), 'f', 4, 64)
		}
		t.Log(line)
	}
}
