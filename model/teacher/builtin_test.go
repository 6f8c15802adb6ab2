package teacher

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/ort"
)

// TestEdgeTPUReference imports MobileNet EdgeTPU (whose file records no
// shapes for computed tensors and whose head has a SQUEEZE) and compares
// its logits on the five reference images with the independent float
// re-implementation's softmax (reference/float_reference_outputs.json):
// the same top-1 on all five, most of the top-5, and a rank correlation
// close to 1 over all 1,001 classes.
func TestEdgeTPUReference(t *testing.T) {
	b, ok := LookupBuiltin(MobileNetEdgeTPU)
	if !ok {
		t.Fatal("no built-in mobilenet_edgetpu")
	}
	var ref struct {
		Models map[string]map[string]struct {
			Top5    []int     `json:"top5"`
			Softmax []float64 `json:"softmax"`
		} `json:"models"`
	}
	raw, err := os.ReadFile(shared.MustPath(t, "weights", "reference", "float_reference_outputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	refs := ref.Models["mobilenet_edgetpu/mobilenet_edgetpu_1.0_224.uint8.tflite"]
	if len(refs) != len(refImages) {
		t.Fatalf("%d reference images, want %d", len(refs), len(refImages))
	}
	te := importShared(t, b.Path)
	if d := b.Default(); te.Features != d.Features || te.FeatureChannels() != d.Channels {
		t.Errorf("features %v channels %v, want %v %v", te.Features, te.FeatureChannels(), d.Features, d.Channels)
	}
	batch := make([]float32, 0, len(refImages)*3*224*224)
	for _, name := range refImages {
		batch = append(batch, refInput(t, name)...)
	}
	in := ort.Tensor{Shape: []int64{int64(len(refImages)), 3, 224, 224}, Data: batch}
	sess := session(t, te, []string{OutputLogits}, 0)
	outs, err := sess.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(outs[0].Shape) != "[5 1001]" {
		t.Fatalf("logits shape %v", outs[0].Shape)
	}
	for i, name := range refImages {
		r := refs[name]
		if len(r.Softmax) != 1001 || len(r.Top5) != 5 {
			t.Fatalf("%s: reference has %d scores and top-%d", name, len(r.Softmax), len(r.Top5))
		}
		logits := outs[0].Data[i*1001 : (i+1)*1001]
		scores := make([]float64, 1001)
		for c, v := range logits {
			scores[c] = float64(v)
		}
		top := TopK(logits, 5)
		overlap := 0
		for _, p := range top {
			for _, c := range r.Top5 {
				if p.Class == c {
					overlap++
				}
			}
		}
		// Our softmax of the top class, against the reference's.
		var z float64
		for _, v := range scores {
			z += math.Exp(v - scores[top[0].Class])
		}
		rho := spearman(scores, r.Softmax)
		t.Logf("%-14s top5 %v (ref %v) overlap %d, p(top1) %.4f (ref %.4f), spearman %.4f",
			name, classes(top), r.Top5, overlap, 1/z, r.Softmax[r.Top5[0]], rho)
		if top[0].Class != r.Top5[0] {
			t.Errorf("%s: top-1 %d, reference %d", name, top[0].Class, r.Top5[0])
		}
		if overlap < 4 {
			t.Errorf("%s: top-5 %v shares %d classes with the reference's %v, want >= 4", name, classes(top), overlap, r.Top5)
		}
		if d := math.Abs(1/z - r.Softmax[r.Top5[0]]); d > 2e-3 {
			t.Errorf("%s: top-1 probability %.4f, reference %.4f", name, 1/z, r.Softmax[r.Top5[0]])
		}
		if rho < 0.99 {
			t.Errorf("%s: Spearman correlation %.4f with the reference softmax, want >= 0.99", name, rho)
		}
	}
}

func classes(p []Prediction) []int {
	var c []int
	for _, x := range p {
		c = append(c, x.Class)
	}
	return c
}

// TestBuiltins checks the built-in table against each file: the default
// layers are the ones Import picks by itself (the last residual add per
// stage), every layer set has the listed channels at strides 4, 8 and 16,
// and unknown names are errors.
func TestBuiltins(t *testing.T) {
	for _, b := range Builtins() {
		te := importShared(t, b.Path)
		if d := b.Default(); te.Features != d.Features || te.FeatureChannels() != d.Channels {
			t.Errorf("%s: default features %v channels %v, table %v %v", b.Name, te.Features, te.FeatureChannels(), d.Features, d.Channels)
		}
		if got, ok := LookupBuiltin(b.Name); !ok || got.Path != b.Path {
			t.Errorf("LookupBuiltin(%q) = %v, %v", b.Name, got, ok)
		}
		path := shared.MustPath(t, b.Path)
		for name, l := range b.Layers {
			te, err := ImportBuiltin(b, path, []string{name})
			if err != nil {
				t.Errorf("%s %s: %v", b.Name, name, err)
				continue
			}
			if te.FeatureChannels() != l.Channels {
				t.Errorf("%s %s: channels %v, table %v", b.Name, name, te.FeatureChannels(), l.Channels)
			}
			for k, f := range te.Features {
				if !strings.Contains(";"+f+";", ";"+l.Features[k]+";") {
					t.Errorf("%s %s: feature %d is %q, want one named %q", b.Name, name, k, f, l.Features[k])
				}
			}
		}
		if _, err := ImportBuiltin(b, path, []string{"widest"}); err == nil || !strings.Contains(err.Error(), "no layer set") {
			t.Errorf("%s: unknown layer set: err %v", b.Name, err)
		}
	}
	if _, ok := LookupBuiltin("resnet"); ok {
		t.Error("unknown name found")
	}
}
