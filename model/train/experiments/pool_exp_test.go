//go:build experiment

package experiments

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

// ckptStudent is the student of a training checkpoint: the configuration
// it was trained with, a backend and a store holding its weights (no
// optimiser, no discriminator).
type ckptStudent struct {
	cfg     train.Config
	backend compute.Backend
	store   *model.Store
}

// loadCheckpointStudent reads a training checkpoint's configuration and
// student weights.
func loadCheckpointStudent(t testing.TB, path string) *ckptStudent {
	cfg, weights, err := train.CheckpointStudent(path)
	if err != nil {
		t.Fatal(err)
	}
	backend, err := train.NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	store, err := train.StudentStore(weights)
	if err != nil {
		t.Fatal(err)
	}
	return &ckptStudent{cfg: cfg, backend: backend, store: store}
}

// checkpointExperiment skips the test unless MULTIAD_EXP and EXP_CKPT are
// set, and returns the student of checkpoint EXP_CKPT and the
// magnetic-tile root.
func checkpointExperiment(t testing.TB) (*ckptStudent, string) {
	_, root := tilesExperiment(t)
	path := os.Getenv("EXP_CKPT")
	if path == "" {
		t.Skip("set EXP_CKPT")
	}
	return loadCheckpointStudent(t, path), root
}

// studentRunner returns a function that runs the student of tr, with the
// graph outputs that outputs builds from its and the teacher's features
// (NHWC, strides 4, 8, 16), over samples eight at a time, handing each
// batch's flat outputs and the index of its first sample to each.
func studentRunner(t testing.TB, tr *ckptStudent, outputs func(s, te [3]*graph.Node) []*graph.Node) func(samples []train.Sample, each func(first int, outs [][]float32)) {
	exec := model.MustNewExec(tr.backend, tr.store, func(scope *model.Scope, in []*graph.Node) []*graph.Node {
		return outputs(student.Forward(scope.At(train.StudentScope), tr.cfg.Student, in[0]), [3]*graph.Node{in[1], in[2], in[3]})
	})
	return func(samples []train.Sample, each func(int, [][]float32)) {
		for i := 0; i < len(samples); i += 8 {
			in := train.BatchTensors(tr.cfg, samples[i:min(i+8, len(samples))])
			out, err := exec.Call(in[0], in[1], in[2], in[3])
			if err != nil {
				t.Fatal(err)
			}
			flat := make([][]float32, len(out))
			for j, o := range out {
				flat[j] = tensors.MustCopyFlatData[float32](o)
			}
			each(i, flat)
		}
	}
}

// TestExperimentPool scores the tiles' test set with the student of a
// finished training checkpoint (EXP_CKPT) when student and teacher features
// are box-averaged over 1×1, 3×3 or 5×5 locations, chosen per scale, before
// the cosine distance (MULTIAD_EXP=1). The distance of local means, unlike
// the blur's mean of local distances, cancels uncorrelated per-location
// error. It reports image AUROC and pixel AUROC (half resolution) for the
// pooling mixes in EXP_MIXES ("1/5/1,1/1/1": window sizes at strides 4, 8,
// 16; default all 27).
func TestExperimentPool(t *testing.T) {
	tr, root := checkpointExperiment(t)
	S := tr.cfg.Size
	labels, pixLabels, test, classes := tilesTestSet(t, root, S)
	pools := []int{0, 1, 2}
	run := studentRunner(t, tr, func(s, te [3]*graph.Node) []*graph.Node {
		var out []*graph.Node
		for _, r := range pools {
			for k := range s {
				out = append(out, nn.CosineDistance(nn.BoxPool(s[k], r), nn.BoxPool(te[k], r)))
			}
		}
		return out
	})
	// raw[pool][scale][image]: the h×h distance map.
	raw := make([][3][][]float32, len(pools))
	run(test, func(_ int, outs [][]float32) {
		for j, flat := range outs {
			p, k := j/3, j%3
			h := S / student.Strides[k]
			for n := 0; n < len(flat)/(h*h); n++ {
				raw[p][k] = append(raw[p][k], flat[n*h*h:(n+1)*h*h])
			}
		}
	})
	sigma := student.DefaultSigma(S)
	// Each scale's pooling chosen separately: mix[k] indexes pools.
	type variant struct {
		mix  [3]int
		w    [3]float64
		pool string // window widths, "1/5/1"
	}
	var vs []variant
	for _, w := range [][3]float64{{0.25, 0.5, 1}, {0.125, 0.25, 1}, {0, 0, 1}} {
		for m := 0; m < 27; m++ {
			mix := [3]int{m % 3, m / 3 % 3, m / 9}
			if w[0] == 0 && mix[0] > 0 || w[1] == 0 && mix[1] > 0 {
				continue // a scale left out needs no pooling variants
			}
			pool := strconv.Itoa(2*pools[mix[0]]+1) + "/" + strconv.Itoa(2*pools[mix[1]]+1) + "/" + strconv.Itoa(2*pools[mix[2]]+1)
			if only := os.Getenv("EXP_MIXES"); only != "" && !slices.Contains(strings.Split(only, ","), pool) {
				continue
			}
			vs = append(vs, variant{mix, w, pool})
		}
	}
	for _, v := range vs {
		name := "pool " + v.pool + " weights " + strconv.FormatFloat(v.w[0], 'g', 3, 64) + "/" + strconv.FormatFloat(v.w[1], 'g', 3, 64) + "/1"
		var mx []float64
		var pix []float32
		var lab []bool
		for i := range test {
			m := make([]float32, S*S)
			for k, st := range student.Strides {
				if v.w[k] == 0 {
					continue
				}
				h := S / st
				up := separable(raw[v.mix[k]][k][i], h, nn.BilinearMatrix(h, S))
				for q, x := range up {
					m[q] += float32(v.w[k]) * x
				}
			}
			m = blurMap(m, S, sigma)
			mx = append(mx, maxOf(m))
			pix, lab = appendHalfRes(pix, lab, m, pixLabels[i*S*S:(i+1)*S*S])
		}
		t.Log(name + ": image AUROC " + f4(auroc(labels, mx)) + ", pixel AUROC " + f4(auroc(lab, float64s(pix))) + "; per class:" + perClassImageAUROC(labels, classes, mx))
	}
}
