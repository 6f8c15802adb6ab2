package workload

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/teacher"
)

// TestFLOPsPerHead checks that the FLOP count follows the bundle's teacher
// and head: the teacher's file is the one the manifest names, the student
// head counts the student, the bank head the bank's nearest-neighbour
// product 2·(S/8)²·channels·vectors, and the fused head both.
func TestFLOPsPerHead(t *testing.T) {
	dir := shared.MustPath(t, "weights")
	const S, vectors = 256, 4096
	cfg := student.DefaultConfig()
	cfg.Width = 16 // not the default, so that reading it from the manifest counts
	for _, name := range []string{teacher.MobileNetV2, teacher.MobileNetEdgeTPU} {
		bt, ok := teacher.LookupBuiltin(name)
		if !ok {
			t.Fatalf("%s is not built in", name)
		}
		layers := bt.Layers[teacher.LayersStageEnds]
		ch := layers.Channels
		cfg.Channels = ch
		js, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		studentFLOPs := cfg.ForwardFLOPs(S)
		bankFLOPs := int64(2 * (S / 8) * (S / 8) * (ch[1] + ch[2]) * vectors)
		var teacherFLOPs int64
		for _, c := range []struct {
			head string
			want int64
		}{{"", studentFLOPs}, {"student", studentFLOPs}, {"bank", bankFLOPs}, {"fused", studentFLOPs + bankFLOPs}} {
			b := &bundle.Bundle{Manifest: bundle.Manifest{
				Teacher:    bundle.Teacher{Name: name, Features: layers.Features[:]},
				Preprocess: preprocess.Config{Size: S},
				Training:   &bundle.Training{Head: c.head, Student: js},
			}}
			if c.head == "bank" || c.head == "fused" {
				b.Manifest.Training.BankSize, b.Manifest.Training.BankChannels = vectors, []int{ch[1], ch[2]}
			}
			path, err := TeacherPath(filepath.Dir(dir), b)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(filepath.Dir(dir), bt.Path); path != want {
				t.Errorf("%s: teacher path %s, want %s", name, path, want)
			}
			tf, hf, err := FLOPs(b, path)
			if err != nil {
				t.Fatalf("%s %q: %v", name, c.head, err)
			}
			if hf != c.want {
				t.Errorf("%s, head %q: %d head FLOPs, want %d", name, c.head, hf, c.want)
			}
			if teacherFLOPs == 0 {
				teacherFLOPs = tf
			}
			if tf <= 0 || tf != teacherFLOPs {
				t.Errorf("%s, head %q: teacher %d FLOPs, want %d for every head", name, c.head, tf, teacherFLOPs)
			}
		}
		t.Logf("%s at %d px: teacher %.3f GFLOP, student %.3f, bank of %d %.3f", name, S, float64(teacherFLOPs)/1e9, float64(studentFLOPs)/1e9, vectors, float64(bankFLOPs)/1e9)
	}
	// A head without its bank's size cannot be counted.
	b := &bundle.Bundle{Manifest: bundle.Manifest{
		Teacher:    bundle.Teacher{Name: teacher.MobileNetV2},
		Preprocess: preprocess.Config{Size: S},
		Training:   &bundle.Training{Head: "bank"},
	}}
	path, err := TeacherPath(filepath.Dir(dir), b)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := FLOPs(b, path); err == nil {
		t.Error("a bank head without bank_size: no error")
	}
	b.Manifest.Teacher.Name = "resnet18"
	if _, err := TeacherPath(filepath.Dir(dir), b); err == nil {
		t.Error("a teacher that is not built in: no error")
	}
}
