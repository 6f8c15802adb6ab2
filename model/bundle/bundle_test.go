package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The testdata manifests were written by multiad train before the training
// section was a struct, when it was a map[string]any: a fused, a bank and a
// student bundle, each with the export parity recorded.
var oldManifests = []string{"fused.model.json", "bank.model.json", "student.model.json"}

// TestOldManifestsLoadAndSaveUnchanged loads bundles whose model.json was
// written with the map, and checks that the struct holds their values and
// that Save writes the same bytes again.
func TestOldManifestsLoadAndSaveUnchanged(t *testing.T) {
	ctx := context.Background()
	for _, name := range oldManifests {
		t.Run(name, func(t *testing.T) {
			old, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			// A stand-in graph, with the manifest's checksum changed to it
			// (the checksum's value is the same length, so the layout holds).
			model := []byte("stand-in graph for " + name)
			var head struct {
				SHA string `json:"model_sha256"`
			}
			if err := json.Unmarshal(old, &head); err != nil || len(head.SHA) != 64 {
				t.Fatalf("model_sha256 %q: %v", head.SHA, err)
			}
			old = bytes.Replace(old, []byte(head.SHA), []byte(SHA256(model)), 1)
			dir := filepath.Join(t.TempDir(), "old.bundle")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ManifestFile), old, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ModelFile), model, 0o644); err != nil {
				t.Fatal(err)
			}
			b, err := Load(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			// Every key and value of the old section is in the struct:
			// compared as generic JSON, independently of the struct.
			var want struct {
				Training map[string]any `json:"training"`
			}
			if err := json.Unmarshal(old, &want); err != nil {
				t.Fatal(err)
			}
			tr := b.Manifest.Training
			if tr == nil {
				t.Fatal("no training section")
			}
			js, err := json.Marshal(tr)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(js, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want.Training) {
				t.Errorf("training section\n got %v\nwant %v", got, want.Training)
			}
			if tr.Head != want.Training["head"] || float64(tr.Size) != want.Training["size"] ||
				tr.ParityMaxAbsScoreDiff == nil || *tr.ParityMaxAbsScoreDiff != want.Training["parity_max_abs_score_diff"] {
				t.Errorf("typed fields: head %q size %d parity %v; want %v", tr.Head, tr.Size, tr.ParityMaxAbsScoreDiff, want.Training)
			}
			out := filepath.Join(t.TempDir(), "again.bundle")
			if err := Save(ctx, out, b); err != nil {
				t.Fatal(err)
			}
			again, err := os.ReadFile(filepath.Join(out, ManifestFile))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, old) {
				t.Errorf("saved model.json differs from the old one:\n%s\nwant\n%s", again, old)
			}
		})
	}
}

// TestTrainingMarshalsLikeTheMap checks the struct against the map it
// replaces, marshalled by encoding/json, for what each head writes,
// including zero values the map kept (a coreset radius or parity of 0).
func TestTrainingMarshalsLikeTheMap(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	zero, small := 0.0, 1.5e-7
	base := func() (Training, map[string]any) {
		tr := Training{AdvWeight: 0.05, Augment: raw(`{"HFlip":false,"VFlip":false,"Shift":0}`), Batch: 8, Denoise: 0,
			Epochs: 7, HardMining: 2.5, Head: "student", LR: 0.001, Map: raw(`{"Fuse":"sum","Sigma":4}`), Seed: 1, Size: 256,
			Steps: 14, EpochKDLoss: []float64{3.9, 3.1}, Student: raw(`{"Width":32,"Channels":[32,48,96]}`), ValFraction: 0.1}
		// The map held the configuration structs themselves, which
		// marshal as their JSON.
		m := map[string]any{"adv_weight": 0.05, "augment": tr.Augment, "batch": 8,
			"denoise": 0.0, "epochs": 7, "hard_mining": 2.5, "head": "student", "lr": 0.001, "map": tr.Map,
			"seed": uint64(1), "size": 256, "steps": 14, "epoch_kd_loss": []float64{3.9, 3.1},
			"student": tr.Student, "val_fraction": 0.1}
		return tr, m
	}
	type tcase struct {
		name string
		edit func(*Training, map[string]any)
	}
	for _, c := range []tcase{
		{"student", func(*Training, map[string]any) {}},
		{"student with parity", func(tr *Training, m map[string]any) {
			tr.ParityMaxAbsScoreDiff, m["parity_max_abs_score_diff"] = &small, small
		}},
		{"bank, nothing trained, radius and parity 0", func(tr *Training, m map[string]any) {
			tr.Head, tr.Steps, tr.EpochKDLoss = "bank", 0, nil
			m["head"], m["steps"], m["epoch_kd_loss"] = "bank", 0, []float64(nil)
			tr.BankSize, tr.BankPatches, tr.CoresetRadius, tr.BankChannels = 576, 576, &zero, []int{32, 96}
			m["bank_size"], m["bank_patches"], m["coreset_radius"], m["bank_channels"] = 576, 576, 0.0, []int{32, 96}
			tr.ParityMaxAbsScoreDiff, m["parity_max_abs_score_diff"] = &zero, 0.0
		}},
		{"fused", func(tr *Training, m map[string]any) {
			tr.Head, m["head"] = "fused", "fused"
			tr.BankSize, tr.BankPatches, tr.CoresetRadius, tr.BankChannels = 300, 576, &small, []int{48, 96}
			m["bank_size"], m["bank_patches"], m["coreset_radius"], m["bank_channels"] = 300, 576, small, []int{48, 96}
			tr.FuseNorms = &FuseNorms{Student: Norm{Mean: 1.7, Std: 0.08}, Bank: Norm{Mean: 34.7, Std: 3.2}}
			m["fuse_norms"] = map[string]Norm{"student": {Mean: 1.7, Std: 0.08}, "bank": {Mean: 34.7, Std: 3.2}}
		}},
	} {
		tr, m := base()
		c.edit(&tr, m)
		got, err := json.MarshalIndent(&tr, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, want)
		}
	}
}

// TestManifestWithoutTraining loads a manifest with no training section
// (it stays nil and is left out again) and one of an older multiad whose
// section lacks later keys (they read as zero).
func TestManifestWithoutTraining(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "student.model.json"))
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(old, &generic); err != nil {
		t.Fatal(err)
	}
	delete(generic, "training")
	js, _ := json.Marshal(generic)
	var m Manifest
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	if m.Training != nil {
		t.Errorf("training %+v, want nil", m.Training)
	}
	if out, _ := json.Marshal(m); strings.Contains(string(out), `"training"`) {
		t.Errorf("nil training section written: %s", out)
	}
	var older Manifest
	if err := json.Unmarshal([]byte(`{"training":{"size":128,"epochs":3,"student":{"Width":16}}}`), &older); err != nil {
		t.Fatal(err)
	}
	if tr := older.Training; tr == nil || tr.Size != 128 || tr.Epochs != 3 || tr.Head != "" || tr.HardMining != 0 || string(tr.Student) != `{"Width":16}` {
		t.Errorf("older section read as %+v", older.Training)
	}
}
