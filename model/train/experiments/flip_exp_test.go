//go:build experiment

package experiments

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

// TestExperimentFlipMismatch measures how far flipping the cached teacher
// features is from the teacher's features of the flipped image (mean
// 1 − cos per scale) on a few magnetic-tile normals (MULTIAD_EXP=1).
func TestExperimentFlipMismatch(t *testing.T) {
	S, root := tilesExperiment(t)
	_, imgs := loadDir(t, filepath.Join(root, "train", "good"), S, 16)
	var flipped [][]float32
	for _, im := range imgs {
		flipped = append(flipped, train.Transform{HFlip: true}.Apply(im, S))
	}
	a, b := mobileNetSamples(t, imgs, S), mobileNetSamples(t, flipped, S)
	for k, st := range student.Strides {
		h := S / st
		C := len(a[0].Feats[k]) / (h * h)
		var sum, sumSelf float64
		var n int
		for i := range a {
			for y := 0; y < h; y++ {
				for x := 0; x < h; x++ {
					var dot, na, nb, dotS, nS float64
					for c := 0; c < C; c++ {
						u := float64(a[i].Feats[k][(c*h+y)*h+h-1-x]) // flipped cached feature
						v := float64(b[i].Feats[k][(c*h+y)*h+x])     // feature of the flipped image
						w := float64(a[i].Feats[k][(c*h+y)*h+x])     // unflipped feature, same place
						dot += u * v
						na += u * u
						nb += v * v
						dotS += w * v
						nS += w * w
					}
					sum += 1 - dot/math.Sqrt(na*nb+1e-12)
					sumSelf += 1 - dotS/math.Sqrt(nS*nb+1e-12)
					n++
				}
			}
		}
		t.Logf("stride %d: mean 1-cos(flip(T(x)), T(flip(x))) = %.4f (unflipped vs flipped image: %.4f)", st, sum/float64(n), sumSelf/float64(n))
	}
}
