package training

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/train"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// tiles links n real magnetic-tile normals into a temp folder, plus one
// unreadable file.
func tiles(t *testing.T, n int) string {
	t.Helper()
	dir := shared.LinkTileNormals(t, n)
	if err := os.WriteFile(filepath.Join(dir, "broken.jpg"), []byte("\xff\xd8not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tinyConfig is a tiny student at 64 px trained for the given epochs.
func tinyConfig(epochs int) train.Config {
	cfg := train.DefaultConfig(64)
	cfg.Epochs = epochs
	cfg.BatchSize = 4
	cfg.Student.Width = 8
	cfg.Student.Depth = 1
	return cfg
}

// checkRuntimeScores scores every readable image in dir through decode →
// m's preprocessing → m's graph and checks that each of want (the trainer's
// held-out scores) is among the results, within tol.
func checkRuntimeScores(t *testing.T, m *inference.Model, dir string, want []float64, tol float64) {
	t.Helper()
	var all []float64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() == "broken.jpg" {
			continue
		}
		imgs, err := decode.URI(context.Background(), filepath.Join(dir, e.Name()), pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		x, err := m.Preprocess(imgs[0])
		if err != nil {
			t.Fatal(err)
		}
		_, s, err := m.Score([][]float32{x})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, float64(s[0]))
	}
	if len(want) == 0 {
		t.Error("no held-out scores to compare")
	}
	for _, v := range want {
		best := math.Inf(1)
		for _, a := range all {
			best = math.Min(best, math.Abs(a-v))
		}
		if best > tol {
			t.Errorf("trainer validation score %v not reproduced by the runtime (closest diff %g)", v, best)
		}
	}
}

// TestTrainExportAgree trains a tiny model on real tiles and checks that
// the exported ONNX graph, the runtime API and the trainer's own validation
// pass agree on every held-out score, and that bad inputs are reported.
func TestTrainExportAgree(t *testing.T) {
	ctx := context.Background()
	data := tiles(t, 12)
	out := filepath.Join(t.TempDir(), "bundle")
	cfg := tinyConfig(2)
	cfg.Denoise = 0.5
	var logs bytes.Buffer
	// Augmentation on: flipped and shifted images get the teacher's features
	// from the open ONNX Runtime session during training; half the images
	// carry synthetic defects.
	res, err := Run(ctx, Options{Data: data, Out: out, Train: cfg, ValFraction: 0.25, Threads: 1, Log: &logs, VerifyExport: true,
		Augment: "on", Shift: 2})
	t.Log(logs.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "flips true, shifts ≤ 2 px, synthetic defects in 0.5 of the images") {
		t.Errorf("augmentation not reported as on:\n%s", logs.String())
	}
	if res.Images != 12 || len(res.Failed) != 1 || !strings.Contains(res.Failed[0], "broken.jpg") {
		t.Errorf("images %d, failed %v; want 12 and broken.jpg", res.Images, res.Failed)
	}
	// Parity: scores of the exported graph vs GoMLX's validation pass.
	sc := res.Bundle.Manifest.Scores
	if tol := ParityTolerance(sc); !(res.ParityMax <= tol) {
		t.Errorf("ONNX vs GoMLX validation scores differ by %g (tolerance %g)", res.ParityMax, tol)
	}
	if len(res.Train.Calibration.Scores) != 3 {
		t.Fatalf("%d validation scores, want 3", len(res.Train.Calibration.Scores))
	}
	// The runtime API on the saved bundle reproduces the calibration.
	m, err := inference.Load(ctx, out, ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Threshold() != sc.Threshold || m.Size() != 64 {
		t.Errorf("bundle threshold %v size %d", m.Threshold(), m.Size())
	}
	// 3 held-out normals: the threshold earns a warning, in the log and in
	// model.json; the training images' domains are recorded.
	if w := m.Bundle.Manifest.Scores.Warning; !strings.Contains(w, "3 held-out normal images") || !strings.Contains(logs.String(), "warning: "+w) {
		t.Errorf("scores.warning %q; log:\n%s", w, logs.String())
	}
	n := 0
	for _, c := range m.Bundle.Manifest.Data.Domains {
		n += c
	}
	if n != 12 {
		t.Errorf("training_data.domains %v count %d images, want 12", m.Bundle.Manifest.Data.Domains, n)
	}
	// The bundle is written before the check and rewritten with its result.
	if p := m.Bundle.Manifest.Training.ParityMaxAbsScoreDiff; p == nil || *p != res.ParityMax {
		t.Errorf("saved bundle's parity_max_abs_score_diff = %v, want %g", p, res.ParityMax)
	}
	// Score every image through decode → runtime: the held-out scores are
	// among them (same images, same numbers).
	checkRuntimeScores(t, m, data, res.Train.Calibration.Scores, ParityTolerance(sc))
	if !strings.Contains(logs.String(), "teacher features") {
		t.Errorf("no progress logged:\n%s", logs.String())
	}
}

func TestEmptyTrainingSet(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{Data: dir, Out: filepath.Join(dir, "b"), Train: train.DefaultConfig(64), Log: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "no usable images") {
		t.Errorf("err = %v", err)
	}
}

func TestHardMiningOption(t *testing.T) {
	for _, c := range []struct {
		opt     string
		medical bool
		want    float64
		err     bool
	}{
		{"auto", false, train.DefaultHardMining, false},
		{"auto", true, 0, false},
		{"1.5", true, 1.5, false},
		{"0", false, 0, false},
		{"-1", false, 0, true},
		{"NaN", false, 0, true},
		{"Inf", false, 0, true},
		{"lots", false, 0, true},
	} {
		got, err := hardMining(c.opt, c.medical)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("hardMining(%q, medical %v) = %v, %v; want %v (error %v)", c.opt, c.medical, got, err, c.want, c.err)
		}
	}
}

func TestFusionOption(t *testing.T) {
	for _, c := range []struct {
		opt     string
		medical bool
		want    student.Fusion
		err     bool
	}{
		{"auto", false, student.FuseSum, false},
		{"auto", true, student.FuseProduct, false},
		{"sum", true, student.FuseSum, false},
		{"product", false, student.FuseProduct, false},
		{"max", false, "", true},
	} {
		got, err := fusion(c.opt, c.medical)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("fusion(%q, medical %v) = %q, %v; want %q (error %v)", c.opt, c.medical, got, err, c.want, c.err)
		}
	}
}

func TestMedicalSigma(t *testing.T) {
	if got, want := MedicalSigma(128), 3*student.DefaultSigma(128); got != want || got != 6 {
		t.Errorf("MedicalSigma(128) = %v, want %v (6 px)", got, want)
	}
}

func TestParityTolerance(t *testing.T) {
	for _, c := range []struct {
		s    bundle.Scores
		want float64
	}{
		{bundle.Scores{Min: 0.6, Max: 1.1}, 1.1e-4}, // the largest score
		{bundle.Scores{Min: -5, Max: 1}, 6e-4},      // the range
		{bundle.Scores{Min: -0.5, Max: -0.5}, 1e-7}, // a range under 1e-3 counts as 1e-3
	} {
		if got := ParityTolerance(c.s); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("ParityTolerance(%+v) = %g, want %g", c.s, got, c.want)
		}
	}
}

func TestParseScales(t *testing.T) {
	var w [3]float64
	var p [3]int
	for _, c := range []struct {
		in      string
		weights bool // parsed as [3]float64, else as [3]int
		ok      bool
	}{
		{"0.25,0.5,1", true, true},
		{" 0, 0.25 ,1", true, true},
		{"1,5,1", false, true},
		{"1.5,1,1", false, false},
		{"1,5", false, false},
		{"1,5,1,1", true, false},
		{"a,b,c", true, false},
		{"", false, false},
	} {
		var ok bool
		if c.weights {
			ok = ParseScales(c.in, &w)
		} else {
			ok = ParseScales(c.in, &p)
		}
		if ok != c.ok {
			t.Errorf("ParseScales(%q) = %v, want %v", c.in, ok, c.ok)
		}
	}
	if ParseScales("0, 0.25 ,1", &w); w != [3]float64{0, 0.25, 1} {
		t.Errorf("weights %v", w)
	}
	if ParseScales("1,5,3", &p); p != [3]int{1, 5, 3} {
		t.Errorf("pool %v", p)
	}
}

func TestFeaturePoolOption(t *testing.T) {
	for _, c := range []struct {
		opt     string
		medical bool
		size    int
		want    [3]int
		err     bool
	}{
		{"auto", false, 256, [3]int{1, 5, 1}, false},
		{"auto", false, 128, [3]int{1, 3, 1}, false},
		{"auto", false, 512, [3]int{1, 9, 1}, false},
		{"auto", true, 256, [3]int{1, 1, 1}, false},
		{"3,5,1", true, 256, [3]int{3, 5, 1}, false},
		{"1,5", false, 256, [3]int{}, true},
	} {
		got, err := featurePool(c.opt, c.medical, c.size)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("featurePool(%q, medical %v, %d) = %v, %v; want %v (error %v)", c.opt, c.medical, c.size, got, err, c.want, c.err)
		}
	}
}
