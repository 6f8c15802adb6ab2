package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/pipelines/training"
)

// trainTiny runs `multiad train` on the first eight magnetic-tile normals
// with a tiny student (64 px, one epoch) plus extra flags, and returns the
// bundle's path and the command's output.
func trainTiny(t *testing.T, extra ...string) (string, string) {
	t.Helper()
	return trainTinyTo(t, filepath.Join(t.TempDir(), "tiny.bundle"), extra...)
}

var (
	tinyOnce sync.Once
	tinyPath string
	tinyLog  string
)

// trainTinyOnce is trainTiny without extra flags, trained once per test
// run for the tests that only need some bundle; it lives as long as the
// test binary's build folder.
func trainTinyOnce(t *testing.T) (string, string) {
	t.Helper()
	multiadBinary(t)
	// Each caller skips (or fails, under MULTIAD_REQUIRE_SHARED) for itself
	// without the shared tiles: inside the Once only the first caller would.
	shared.MustPath(t, "data", "industrial", "magnetic_tile", "train", "good")
	tinyOnce.Do(func() { tinyPath, tinyLog = trainTinyTo(t, filepath.Join(binDir, "tiny.bundle")) })
	if tinyPath == "" {
		t.Fatal("training the tiny bundle failed in an earlier test")
	}
	return tinyPath, tinyLog
}

// trainTinyTo is trainTiny writing the bundle to out.
func trainTinyTo(t *testing.T, out string, extra ...string) (string, string) {
	t.Helper()
	bin := multiadBinary(t)
	data := shared.LinkTileNormals(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append([]string{"train", "--data", data, "--out", out, "--size", "64", "--epochs", "1", "--batch", "4",
		"--width", "8", "--depth", "1", "--val-fraction", "0.25", "--threads", "1"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = repoRoot(t)
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("multiad %v: %v\n%s", args, err, log)
	}
	return out, string(log)
}

// TestTrainCLI checks that `multiad train` verifies its export by default:
// the bundle records the largest ONNX Runtime vs training score difference
// on the held-out images, within training.ParityTolerance, and
// --verify-export=false leaves it out. With nothing held out the log says
// the threshold comes from the training images.
func TestTrainCLI(t *testing.T) {
	for _, c := range []struct {
		flags           []string
		verify          bool
		log             string
		resize, teacher string // recorded in the bundle
	}{
		// The defaults: auto picks the bank head on training.AutoTeacher's teacher.
		{nil, true, "of 2 held-out normals), ONNX vs Go max score diff", "antialias", training.AutoTeacher(false)},
		{[]string{"--verify-export=false"}, false, "export parity not checked", "antialias", training.AutoTeacher(false)},
		{[]string{"--head", "student", "--teacher", "mobilenet_v2"}, true, "of 2 held-out normals), ONNX vs GoMLX max score diff", "antialias", "mobilenet_v2"},
		{[]string{"--head", "student", "--teacher", "mobilenet_v2", "--val-fraction", "0"}, true, "of 8 training images: nothing held out)", "antialias", "mobilenet_v2"},
		{[]string{"--resize", "bilinear", "--teacher", "mobilenet_edgetpu"}, true, "teacher mobilenet_edgetpu", "bilinear", "mobilenet_edgetpu"},
	} {
		out, log := trainTiny(t, c.flags...)
		b, err := bundle.Load(context.Background(), out)
		if err != nil {
			t.Fatal(err)
		}
		// Industrial images get feature pooling by default (3 wide at 64 px).
		var m student.MapConfig
		if err := json.Unmarshal(b.Manifest.Training.Map, &m); err != nil || m.Pool != [3]int{1, 3, 1} {
			t.Errorf("flags %v: map %s (%v), want Pool [1 3 1] (auto)", c.flags, b.Manifest.Training.Map, err)
		}
		if got := b.Manifest.Preprocess.Resize; got != c.resize {
			t.Errorf("flags %v: bundle resize %q, want %q", c.flags, got, c.resize)
		}
		if got := b.Manifest.Teacher.Name; got != c.teacher {
			t.Errorf("flags %v: bundle teacher %q, want %q", c.flags, got, c.teacher)
		}
		if !strings.Contains(log, c.log) {
			t.Errorf("flags %v: log lacks %q:\n%s", c.flags, c.log, log)
		}
		p := b.Manifest.Training.ParityMaxAbsScoreDiff
		switch {
		case (p != nil) != c.verify:
			t.Errorf("flags %v: parity recorded %v, want %v\n%s", c.flags, p != nil, c.verify, log)
		case p != nil && !(*p <= training.ParityTolerance(b.Manifest.Scores)):
			t.Errorf("flags %v: ONNX vs training scores differ by %g, tolerance %g", c.flags, *p, training.ParityTolerance(b.Manifest.Scores))
		}
	}
}

// TestTrainCLIHeads checks --head bank end to end through the CLI (no
// student trained, the bundle records the head and bank size, parity
// checked against the Go side) and that an unknown head is refused.
func TestTrainCLIHeads(t *testing.T) {
	out, log := trainTiny(t, "--head", "bank", "--bank-size", "200")
	b, err := bundle.Load(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	tr := b.Manifest.Training
	if tr.Head != "bank" || tr.BankSize != 200 {
		t.Errorf("bundle head %v, bank size %v; want bank, 200", tr.Head, tr.BankSize)
	}
	if !strings.Contains(log, "ONNX vs Go max score diff") || strings.Contains(log, "epoch 1/1") {
		t.Errorf("log of a bank head:\n%s", log)
	}
	if p := tr.ParityMaxAbsScoreDiff; p == nil || !(*p <= training.ParityTolerance(b.Manifest.Scores)) {
		t.Errorf("parity %v (tolerance %g)", p, training.ParityTolerance(b.Manifest.Scores))
	}
	cmd := exec.Command(multiadBinary(t), "train", "--data", t.TempDir(), "--out", filepath.Join(t.TempDir(), "x"), "--head", "knn")
	cmd.Dir = repoRoot(t)
	if msg, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(msg), `--head "knn"`) {
		t.Errorf("--head knn: %v\n%s", err, msg)
	}
}
