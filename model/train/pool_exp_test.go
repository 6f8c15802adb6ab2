package train

import (
	"bytes"
	"encoding/gob"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/student"
)

// loadCheckpointStudent reads a training checkpoint's configuration and
// student variables into a new trainer (no optimiser, no discriminator).
func loadCheckpointStudent(t testing.TB, path string) *trainer {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ckptFile
	if err := gob.NewDecoder(bytes.NewReader(bytes.TrimPrefix(b, []byte(checkpointMagic)))).Decode(&f); err != nil {
		t.Fatal(err)
	}
	backend, err := NewBackend("")
	if err != nil {
		t.Fatal(err)
	}
	tr := &trainer{cfg: f.Config, backend: backend, store: model.NewStore()}
	for _, v := range f.Vars {
		if v.Trainable && v.F32 != nil && strings.HasPrefix(v.Path, "/"+StudentScope+"/") {
			if _, err := tr.store.CreateVariable(v.Path, tensors.FromFlatDataAndDimensions(v.F32, v.Dims...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return tr
}

// boxPool averages NHWC features over (2r+1)² locations (clipped at the
// borders) with constant separable matrices.
func boxPool(x *graph.Node, r int) *graph.Node {
	if r == 0 {
		return x
	}
	d := x.Shape().Dimensions
	g := x.Graph()
	m := func(n int) *graph.Node {
		return graph.Reshape(graph.Const(g, nn.Flat32(boxMatrix(n, r))), n, n)
	}
	y := graph.Einsum("nhwc,Ww->nhWc", x, m(d[2]))
	return graph.Einsum("nhWc,Hh->nHWc", y, m(d[1]))
}

// TestExperimentPool scores the tiles' test set with the student of a
// finished training checkpoint (EXP_CKPT) when student and teacher features
// are box-averaged over 1×1, 3×3 or 5×5 locations, chosen per scale, before
// the cosine distance (MULTIAD_EXP=1). The distance of local means, unlike
// the blur's mean of local distances, cancels uncorrelated per-location
// error. It reports image AUROC only: pixel AUROC over every variant would
// take hours.
func TestExperimentPool(t *testing.T) {
	_, root := tilesExperiment(t)
	path := os.Getenv("EXP_CKPT")
	if path == "" {
		t.Skip("set EXP_CKPT")
	}
	tr := loadCheckpointStudent(t, path)
	S := tr.cfg.Size
	labels, _, test, classes := tilesTestSet(t, root, S)
	pools := []int{0, 1, 2}
	exec := model.MustNewExec(tr.backend, tr.store, func(scope *model.Scope, in []*graph.Node) []*graph.Node {
		s := student.Forward(scope.At(StudentScope), tr.cfg.Student, in[0])
		var out []*graph.Node
		for _, r := range pools {
			for k := range s {
				out = append(out, nn.CosineDistance(boxPool(s[k], r), boxPool(in[k+1], r)))
			}
		}
		return out
	})
	// raw[pool][scale][image]: the h×h distance map.
	raw := make([][3][][]float32, len(pools))
	for i := 0; i < len(test); i += 8 {
		in := tr.batchTensors(test[i:min(i+8, len(test))])
		out, err := exec.Call(in[0], in[1], in[2], in[3])
		if err != nil {
			t.Fatal(err)
		}
		for j, o := range out {
			p, k := j/3, j%3
			h := S / student.Strides[k]
			flat := tensors.MustCopyFlatData[float32](o)
			for n := 0; n < len(flat)/(h*h); n++ {
				raw[p][k] = append(raw[p][k], flat[n*h*h:(n+1)*h*h])
			}
		}
	}
	sigma := student.DefaultSigma(S)
	// Each scale's pooling chosen separately: mix[k] indexes pools.
	type variant struct {
		mix [3]int
		w   [3]float64
	}
	var vs []variant
	for _, w := range [][3]float64{{0.25, 0.5, 1}, {0.125, 0.25, 1}, {0, 0, 1}} {
		for m := 0; m < 27; m++ {
			mix := [3]int{m % 3, m / 3 % 3, m / 9}
			if w[0] == 0 && mix[0] > 0 || w[1] == 0 && mix[1] > 0 {
				continue // a scale left out needs no pooling variants
			}
			vs = append(vs, variant{mix, w})
		}
	}
	for _, v := range vs {
		name := "pool " + strconv.Itoa(2*pools[v.mix[0]]+1) + "/" + strconv.Itoa(2*pools[v.mix[1]]+1) + "/" + strconv.Itoa(2*pools[v.mix[2]]+1) +
			" weights " + strconv.FormatFloat(v.w[0], 'g', 3, 64) + "/" + strconv.FormatFloat(v.w[1], 'g', 3, 64) + "/1"
		var mx []float64
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
			mx = append(mx, maxOf(blurMap(m, S, sigma)))
		}
		t.Log(name + ": image AUROC " + f4(auroc(labels, mx)) + "; per class:" + perClassImageAUROC(labels, classes, mx))
	}
}
