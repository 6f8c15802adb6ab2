//go:build experiment

package experiments

import (
	"context"
	"os"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
)

// TestExperimentGlobal scores the tiles' test set with bundle EXP_BUNDLE
// and reports per-class pixel AUROC (half resolution) of the map minus a
// per-image background level (λ times a quantile of the image's own map)
// and of the map plus λ times the image score (local evidence plus the
// image's own), then where the map's pixel AUROC is lost: defect pixels
// against good images' pixels and against the normal pixels of defective
// images, overall and per class (MULTIAD_EXP=1).
func TestExperimentGlobal(t *testing.T) {
	_, root := tilesExperiment(t)
	u := os.Getenv("EXP_BUNDLE")
	if u == "" {
		t.Skip("set EXP_BUNDLE")
	}
	m, err := inference.Load(context.Background(), u, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	S := m.Size()
	_, pixLabels, test, classes := tilesTestSet(t, root, S)
	maps, scores := scoreAll(t, m, test)
	res := classMaps{}
	for _, q := range []float64{0.1, 0.25, 0.5, 0.75} {
		for _, lambda := range []float32{0.5, 1} {
			name := "minus " + strconv.FormatFloat(float64(lambda), 'g', 3, 32) + "×q" + strconv.FormatFloat(q, 'g', 3, 64)
			for i, mp := range maps {
				s := slices.Clone(mp)
				slices.Sort(s)
				bg := lambda * s[int(q*float64(len(s)))]
				g := make([]float32, len(mp))
				for p, v := range mp {
					g[p] = v - bg
				}
				res.add(classes[i], name, g, pixLabels[i*S*S:(i+1)*S*S])
			}
		}
	}
	for _, lambda := range []float32{0, 0.25, 0.5, 1, 2, 4} {
		name := "λ " + strconv.FormatFloat(float64(lambda), 'g', 3, 32)
		for i, mp := range maps {
			g := make([]float32, len(mp))
			for p, v := range mp {
				g[p] = v + lambda*scores[i]
			}
			res.add(classes[i], name, g, pixLabels[i*S*S:(i+1)*S*S])
		}
	}
	res.report(t)
	// Half-resolution defect ([0]) and normal ([1]) pixels of each class's
	// images.
	byClass := map[string][2][]float64{}
	for i, mp := range maps {
		pix, lab := appendHalfRes(nil, nil, mp, pixLabels[i*S*S:(i+1)*S*S])
		e := byClass[classes[i]]
		for j, v := range pix {
			if lab[j] {
				e[0] = append(e[0], float64(v))
			} else {
				e[1] = append(e[1], float64(v))
			}
		}
		byClass[classes[i]] = e
	}
	names := make([]string, 0, len(byClass))
	for c := range byClass {
		names = append(names, c)
	}
	sort.Strings(names)
	// All defect pixels against the pixels of good images only, and against
	// the normal pixels of defective images only.
	var pos, defNeg []float64
	for _, c := range names {
		pos = append(pos, byClass[c][0]...)
		if c != "good" {
			defNeg = append(defNeg, byClass[c][1]...)
		}
	}
	goodNeg := byClass["good"][1]
	t.Logf("defect pixels (%d) vs good images' pixels (%d): %.4f; vs defective images' normal pixels (%d): %.4f",
		len(pos), len(goodNeg), aurocPosNeg(pos, goodNeg), len(defNeg), aurocPosNeg(pos, defNeg))
	// Per class: all defect pixels against that class's images' normal
	// pixels, and that class's defect pixels against its own normal pixels.
	for _, c := range names {
		e := byClass[c]
		line := c + ": all defect pixels vs its normal pixels " + f4(aurocPosNeg(pos, e[1]))
		if len(e[0]) > 0 {
			line += ", its defect pixels vs its normal pixels " + f4(aurocPosNeg(e[0], e[1]))
			line += ", defect pixels " + strconv.Itoa(len(e[0]))
		}
		t.Log(line)
	}
}

// aurocPosNeg is the AUROC of scores pos (anomalous) against neg (normal).
func aurocPosNeg(pos, neg []float64) float64 {
	lab := make([]bool, len(pos)+len(neg))
	for i := range pos {
		lab[i] = true
	}
	return auroc(lab, append(slices.Clone(pos), neg...))
}
