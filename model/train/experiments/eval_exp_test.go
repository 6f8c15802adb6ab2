//go:build experiment

package experiments

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/raster"
	"github.com/multiad/multiad/metrics"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/train"
)

// auroc is metrics.AUROC on boolean labels.
func auroc(labels []bool, scores []float64) float64 {
	l := make([]int, len(labels))
	for i, v := range labels {
		if v {
			l[i] = 1
		}
	}
	a, err := metrics.AUROC(l, scores)
	if err != nil {
		return math.NaN()
	}
	return a
}

func loadDir(t testing.TB, dir string, S int, limit int) (names []string, imgs [][]float32) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".jpg") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if limit > 0 && len(names) > limit {
		// Spread the subset over the sorted list.
		var sub []string
		for i := 0; i < limit; i++ {
			sub = append(sub, names[i*len(names)/limit])
		}
		names = sub
	}
	cfg := preprocess.Default(S)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		ims, err := raster.Decode(data, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		img := ims[0]
		if padExperiment() {
			img, _, _ = padSquare(img)
		}
		x, err := preprocess.Tensor(img, cfg)
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, x)
	}
	return names, imgs
}

// maskAt reads a 0/255 mask and samples it at S×S (nearest).
func maskAt(t testing.TB, path string, S int) []bool {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := m.Bounds()
	out := make([]bool, S*S)
	if padExperiment() {
		for y := 0; y < S; y++ {
			for x := 0; x < S; x++ {
				px, py, ok := padSource(b.Dx(), b.Dy(), S, x, y)
				pixValid = append(pixValid, ok)
				if ok {
					r, _, _, _ := m.At(b.Min.X+px, b.Min.Y+py).RGBA()
					out[y*S+x] = r > 0x7fff
				}
			}
		}
		return out
	}
	for y := 0; y < S; y++ {
		for x := 0; x < S; x++ {
			r, _, _, _ := m.At(b.Min.X+(2*x+1)*b.Dx()/(2*S), b.Min.Y+(2*y+1)*b.Dy()/(2*S)).RGBA()
			out[y*S+x] = r > 0x7fff
		}
	}
	return out
}

// experimentConfig is train.DefaultConfig(S) with the EXP_* overrides (EXP_W,
// EXP_D, EXP_SE, EXP_EPOCHS, EXP_B, EXP_LR, EXP_ADV, EXP_HARD, EXP_FLIP,
// EXP_SCHED).
func experimentConfig(S int) train.Config {
	cfg := train.DefaultConfig(S)
	cfg.Student.Width = int(envF("EXP_W", 32))
	cfg.Student.Depth = int(envF("EXP_D", 2))
	cfg.Student.SEReduction = int(envF("EXP_SE", 16))
	cfg.Epochs = int(envF("EXP_EPOCHS", 5))
	cfg.BatchSize = int(envF("EXP_B", 8))
	cfg.LR = envF("EXP_LR", 1e-3)
	cfg.AdvWeight = envF("EXP_ADV", 0.05)
	cfg.HardMining = envF("EXP_HARD", train.DefaultHardMining)
	cfg.Augment = train.Augment{HFlip: envF("EXP_FLIP", 0) > 0, VFlip: envF("EXP_FLIP", 0) > 0}
	if s := os.Getenv("EXP_SCHED"); s != "" {
		cfg.Schedule = s
	}
	return cfg
}

// tilesExperiment skips the test unless MULTIAD_EXP is set and returns the
// experiment's image size (EXP_S, default 128) and the magnetic-tile root.
func tilesExperiment(t testing.TB) (S int, root string) {
	t.Helper()
	if os.Getenv("MULTIAD_EXP") == "" {
		t.Skip("set MULTIAD_EXP=1")
	}
	return int(envF("EXP_S", 128)), shared.MustPath(t, "data", "industrial", "magnetic_tile")
}

// tilesTestSet loads the magnetic-tile test set (EXP_NTEST images per
// class, 0: all) with image labels, S×S pixel labels, teacher features and
// each image's class ("good" or the defect type).
func tilesTestSet(t testing.TB, root string, S int) (labels, pixLabels []bool, samples []train.Sample, classes []string) {
	dirs, _ := os.ReadDir(filepath.Join(root, "test"))
	for _, c := range dirs {
		names, imgs := loadDir(t, filepath.Join(root, "test", c.Name()), S, int(envF("EXP_NTEST", 0)))
		samples = append(samples, mobileNetSamples(t, imgs, S)...)
		for _, n := range names {
			classes = append(classes, c.Name())
			labels = append(labels, c.Name() != "good")
			if c.Name() == "good" {
				if padExperiment() { // the mask geometry, from the image
					goodValid(t, filepath.Join(root, "test", c.Name(), n), S)
				}
				pixLabels = append(pixLabels, make([]bool, S*S)...)
			} else {
				pixLabels = append(pixLabels, maskAt(t, filepath.Join(root, "ground_truth", c.Name(), strings.TrimSuffix(n, ".jpg")+"_mask.png"), S)...)
			}
		}
	}
	return labels, pixLabels, samples, classes
}
