package training

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/teacher"
)

// TestTrainEdgeTPU trains a tiny model with the MobileNet EdgeTPU teacher
// (channels 32/48/96, unlike MobileNetV2's 24/32/96) on antialiased
// inputs: the student adapts to the channels, the exported graph agrees
// with training, the runtime (decode → the bundle's preprocessing → graph)
// reproduces the trainer's held-out scores, and the bundle names the
// teacher with its file's sha256 and records the resize.
func TestTrainEdgeTPU(t *testing.T) {
	ctx := context.Background()
	data := tiles(t, 8)
	out := filepath.Join(t.TempDir(), "bundle")
	cfg := tinyConfig(1)
	pcfg := preprocess.Default(64)
	pcfg.Resize = preprocess.ResizeAntialias
	var logs bytes.Buffer
	res, err := Run(ctx, Options{Data: data, Out: out, Train: cfg, Preprocess: pcfg, ValFraction: 0.25, Threads: 1, Log: &logs, VerifyExport: true,
		Teacher: teacher.MobileNetEdgeTPU})
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if tol := ParityTolerance(res.Bundle.Manifest.Scores); !(res.ParityMax <= tol) {
		t.Errorf("ONNX vs GoMLX validation scores differ by %g (tolerance %g)", res.ParityMax, tol)
	}
	b, _ := teacher.LookupBuiltin(teacher.MobileNetEdgeTPU)
	layers := b.Default()
	raw, err := os.ReadFile(shared.MustPath(t, b.Path))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	saved, err := bundle.Load(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	got := saved.Manifest.Teacher
	if got.Name != teacher.MobileNetEdgeTPU || got.SHA256 != hex.EncodeToString(sum[:]) || strings.Join(got.Features, ",") != strings.Join(layers.Features[:], ",") {
		t.Errorf("bundle teacher %+v, want %s sha256 %x features %v", got, b.Name, sum, layers.Features)
	}
	if ch := res.Train.Config.Student.Channels; ch != layers.Channels {
		t.Errorf("student channels %v, want the teacher's %v", ch, layers.Channels)
	}
	if saved.Manifest.Preprocess.Resize != preprocess.ResizeAntialias {
		t.Errorf("bundle resize %q", saved.Manifest.Preprocess.Resize)
	}
	m, err := inference.Load(ctx, out, ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	checkRuntimeScores(t, m, data, res.Train.Calibration.Scores, ParityTolerance(res.Bundle.Manifest.Scores))
}

func TestLoadTeacherNames(t *testing.T) {
	for _, medical := range []bool{false, true} {
		if _, ok := teacher.LookupBuiltin(AutoTeacher(medical)); !ok {
			t.Errorf("AutoTeacher(%v) = %q is not a built-in teacher", medical, AutoTeacher(medical))
		}
	}
	// Loading a built-in teacher reads its weights from the shared folder.
	shared.MustPath(t, "weights")
	def, err := LoadTeacher("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if def.Name != teacher.MobileNetV2 || def.FeatureChannels() != [3]int{24, 32, 96} {
		t.Errorf("default teacher %s channels %v", def.Name, def.FeatureChannels())
	}
	wide, err := LoadTeacher(teacher.MobileNetEdgeTPU, []string{teacher.LayersExpanded})
	if err != nil {
		t.Fatal(err)
	}
	if wide.FeatureChannels() != [3]int{32, 192, 384} {
		t.Errorf("mobilenet_edgetpu expanded: channels %v", wide.FeatureChannels())
	}
	for _, c := range []struct{ name, want string }{
		{"auto", "resolved per modality"},
		{"resnet50", "neither a file nor a built-in teacher (mobilenet_v2, mobilenet_edgetpu)"},
		{"/no/such/file.tflite", "no such file"},
	} {
		if _, err := LoadTeacher(c.name, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadTeacher(%q): error %v, want %q", c.name, err, c.want)
		}
	}
}
