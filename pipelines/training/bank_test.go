package training

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/multiad/multiad/model/export"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/model/train"
)

// TestHeadsParity trains the bank and fused heads on real tiles and checks
// the parity of the exported graph with the Go side (model/bank's
// brute-force reference, and GoMLX for the fused head's student) on the
// held-out normals, what the bundle records, and that the runtime
// reproduces the calibration scores.
func TestHeadsParity(t *testing.T) {
	ctx := context.Background()
	data := tiles(t, 12)
	for _, c := range []struct{ head, teacher string }{{"bank", ""}, {"fused", ""}, {"bank", teacher.MobileNetEdgeTPU}} {
		head := c.head
		t.Run(head+c.teacher, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "bundle")
			cfg := train.DefaultConfig(64)
			cfg.Epochs, cfg.BatchSize, cfg.Student.Width, cfg.Student.Depth = 1, 4, 8, 1
			pcfg := preprocess.Default(64)
			pcfg.Resize = preprocess.ResizeAntialias
			var logs bytes.Buffer
			res, err := Run(ctx, Options{Data: data, Out: out, Train: cfg, Preprocess: pcfg, ValFraction: 0.25, Threads: 1, Log: &logs, VerifyExport: true,
				Head: head, BankSize: 300, Teacher: c.teacher})
			if err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			t.Log(logs.String())
			sc := res.Bundle.Manifest.Scores
			if tol := ParityTolerance(sc); !(res.ParityMax <= tol) {
				t.Errorf("ONNX vs Go validation scores differ by %g (tolerance %g)", res.ParityMax, tol)
			}
			tr := res.Bundle.Manifest.Training
			if tr["head"] != export.Head(head) || tr["bank_size"] != 300 || tr["bank_patches"] != 9*8*8 {
				t.Errorf("manifest head %v, bank size %v of %v patches; want %s, 300 of %d", tr["head"], tr["bank_size"], tr["bank_patches"], head, 9*8*8)
			}
			want := []int{32, 96} // the teacher's stride-8 and stride-16 channels
			if c.teacher == teacher.MobileNetEdgeTPU {
				want = []int{48, 96}
			}
			if got, _ := tr["bank_channels"].([]int); !slices.Equal(got, want) {
				t.Errorf("bank channels %v, want %v", tr["bank_channels"], want)
			}
			if _, ok := tr["fuse_norms"]; ok != (head == "fused") {
				t.Errorf("fuse_norms recorded: %v", ok)
			}
			trained := strings.Contains(logs.String(), "epoch 1/1")
			if trained != (head == "fused") {
				t.Errorf("student trained: %v, head %s", trained, head)
			}
			m, err := inference.Load(ctx, out, ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if got := res.Train.Calibration.Scores; len(got) != 3 || !(sc.Max > sc.Min) {
				t.Errorf("calibration scores %v", got)
			}
		})
	}
}

func TestResolveHead(t *testing.T) {
	for _, c := range []struct {
		opt     string
		medical bool
		want    export.Head
		err     bool
	}{
		{"", false, export.HeadStudent, false},
		{"student", true, export.HeadStudent, false},
		{"bank", false, export.HeadBank, false},
		{"fused", true, export.HeadFused, false},
		{"auto", false, AutoHead(false), false},
		{"auto", true, AutoHead(true), false},
		{"knn", false, "", true},
	} {
		got, err := resolveHead(c.opt, c.medical)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("resolveHead(%q, %v) = %q, %v", c.opt, c.medical, got, err)
		}
	}
}

func TestBankSizeDefaults(t *testing.T) {
	for _, c := range []struct {
		opt  int
		head export.Head
		want int
	}{{0, export.HeadBank, DefaultBankSize}, {0, export.HeadFused, DefaultFusedBankSize}, {100, export.HeadFused, 100}, {100, export.HeadBank, 100}} {
		if got := BankSize(c.opt, c.head); got != c.want {
			t.Errorf("BankSize(%d, %s) = %d, want %d", c.opt, c.head, got, c.want)
		}
	}
}
