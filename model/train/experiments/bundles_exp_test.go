//go:build experiment

package experiments

import (
	"context"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/train"
)

// TestExperimentBundles scores the magnetic-tile test set with each bundle
// in EXP_BUNDLES (comma-separated, same size) and with their mean map (an
// ensemble), and reports image AUROC for several image scores and
// per-defect pixel AUROC (MULTIAD_EXP=1).
func TestExperimentBundles(t *testing.T) {
	_, root := tilesExperiment(t)
	uris := strings.Split(os.Getenv("EXP_BUNDLES"), ",")
	if uris[0] == "" {
		t.Skip("set EXP_BUNDLES")
	}
	var models []*inference.Model
	for _, u := range uris {
		m, err := inference.Load(context.Background(), u, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		models = append(models, m)
	}
	S := models[0].Size()
	labels, pixLabels, test, classes := tilesTestSet(t, root, S)
	all := make([][][]float32, len(models)) // [model][image] map
	for k, m := range models {
		all[k], _ = scoreAll(t, m, test)
	}
	variants := map[string][][]float32{}
	for k := range models {
		variants["model "+string(rune('a'+k))] = all[k]
	}
	if len(models) > 1 {
		mean := make([][]float32, len(test))
		for i := range test {
			mean[i] = make([]float32, S*S)
			for k := range models {
				for p, v := range all[k][i] {
					mean[i][p] += v / float32(len(models))
				}
			}
		}
		variants["mean"] = mean
	}
	res := classMaps{}
	for _, n := range slices.Sorted(maps.Keys(variants)) {
		var mx, prom, top []float64
		for i, m := range variants[n] {
			res.add(classes[i], n, m, pixLabels[i*S*S:(i+1)*S*S])
			s := append([]float32(nil), m...)
			sort.Slice(s, func(a, b int) bool { return s[a] > s[b] })
			mx = append(mx, float64(s[0]))
			prom = append(prom, float64(s[0]-s[len(s)/2]))
			top = append(top, topMeanSorted(s, 0.01))
		}
		line := n + ": image AUROC max " + f4(auroc(labels, mx)) + ", max−median " + f4(auroc(labels, prom)) + ", top-1% " + f4(auroc(labels, top)) + "; max per class:"
		line += perClassImageAUROC(labels, classes, mx)
		t.Log(line)
		line = n + ": image AUROC of the max inside a margin of"
		for _, margin := range []int{S / 32, S / 16, S / 8} {
			var in []float64
			for _, m := range variants[n] {
				in = append(in, float64(interiorMax(m, S, margin)))
			}
			line += " " + strconv.Itoa(margin) + " px: " + f4(auroc(labels, in))
		}
		t.Log(line)
	}
	res.report(t)
}

// scoreAll scores the images of test with m, eight at a time, and returns
// their maps and scores.
func scoreAll(t testing.TB, m *inference.Model, test []train.Sample) (maps [][]float32, scores []float32) {
	for i := 0; i < len(test); i += 8 {
		var batch [][]float32
		for _, s := range test[i:min(i+8, len(test))] {
			batch = append(batch, s.Image)
		}
		ms, sc, err := m.Score(batch)
		if err != nil {
			t.Fatal(err)
		}
		for j, mp := range ms {
			maps = append(maps, append([]float32(nil), mp...))
			scores = append(scores, sc[j])
		}
	}
	return maps, scores
}

// interiorMax returns the largest value of the S×S map m at least margin
// pixels from its border.
func interiorMax(m []float32, S, margin int) float32 {
	best := float32(math.Inf(-1))
	for y := margin; y < S-margin; y++ {
		for _, v := range m[y*S+margin : y*S+S-margin] {
			best = max(best, v)
		}
	}
	return best
}

func f4(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }

// perClassImageAUROC formats image AUROC of each defect class's images
// against the good ones.
func perClassImageAUROC(labels []bool, classes []string, scores []float64) string {
	var line string
	for _, c := range []string{"blowhole", "break", "crack", "fray", "uneven"} {
		var l []bool
		var sc []float64
		for i := range labels {
			if classes[i] == c || classes[i] == "good" {
				l = append(l, labels[i])
				sc = append(sc, scores[i])
			}
		}
		line += " " + c + " " + f4(auroc(l, sc))
	}
	return line
}
