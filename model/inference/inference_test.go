package inference

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/inference/inferencetest"
	"github.com/multiad/multiad/model/ort"
)

func TestScoreTestBundle(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "b")
	if err := inferencetest.WriteBundle(dir, 32); err != nil {
		t.Fatal(err)
	}
	m, err := Load(ctx, dir, ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Three inputs with known maps: map = 1 − channel mean, score = max.
	batch := make([][]float32, 3)
	for b := range batch {
		batch[b] = make([]float32, 3*32*32)
		for i := range batch[b] {
			batch[b][i] = float32((i*7+b*13)%100) / 100
		}
	}
	var wg sync.WaitGroup
	for rep := 0; rep < 4; rep++ { // concurrent use of one session
		wg.Add(1)
		go func() {
			defer wg.Done()
			maps, scores, err := m.Score(batch)
			if err != nil {
				t.Error(err)
				return
			}
			for b := range batch {
				best := math.Inf(-1)
				for p := 0; p < 32*32; p++ {
					want := 1 - (float64(batch[b][p])+float64(batch[b][1024+p])+float64(batch[b][2048+p]))/3
					if math.Abs(float64(maps[b][p])-want) > 1e-6 {
						t.Errorf("map %d[%d] = %v, want %v", b, p, maps[b][p], want)
						return
					}
					best = math.Max(best, want)
				}
				if math.Abs(float64(scores[b])-best) > 1e-6 {
					t.Errorf("score %d = %v, want %v", b, scores[b], best)
				}
			}
		}()
	}
	wg.Wait()
	if _, _, err := m.Score([][]float32{make([]float32, 10)}); err == nil || !strings.Contains(err.Error(), "3x32x32") {
		t.Errorf("wrong-sized tensor: err = %v", err)
	}
}

func TestBundleErrors(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	good := filepath.Join(root, "good")
	if err := inferencetest.WriteBundle(good, 32); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(root, "b.tar")
	b, err := bundle.Load(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Save(ctx, tarPath, b); err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Load(ctx, tarPath); err != nil {
		t.Fatalf("tar round trip: %v", err)
	}
	mutate := func(name string, f func(m map[string]any)) string {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		model, err := os.ReadFile(filepath.Join(good, bundle.ModelFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, bundle.ModelFile), model, 0o644); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		raw, err := os.ReadFile(filepath.Join(good, bundle.ManifestFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		if raw, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, bundle.ManifestFile), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	cases := []struct {
		uri  string
		want string
	}{
		{filepath.Join(root, "missing"), "missing model.json"},
		{mutate("version", func(m map[string]any) { m["format_version"] = 99 }), "format version 99"},
		{mutate("sha", func(m map[string]any) { m["model_sha256"] = "00" }), "does not match"},
		{mutate("size", func(m map[string]any) { m["preprocess"].(map[string]any)["size"] = 33 }), "multiple of 32"},
	}
	for _, c := range cases {
		_, err := Load(ctx, c.uri, ort.Options{Device: ort.DeviceCPU})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", c.uri, err, c.want)
		}
	}
}
