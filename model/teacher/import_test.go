package teacher

import (
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/tflite"
	"github.com/multiad/multiad/model/tflite/tflitetest"
)

func TestImportErrors(t *testing.T) {
	dir := t.TempDir()
	full, err := os.ReadFile(shared.MustPath(t, v2Path))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	junk := make([]byte, 5000)
	rng.Read(junk)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"random", junk, "not a TFLite model"},
		{"truncated-100", full[:100], "tflite: malformed file"},
		{"truncated-half", full[:len(full)/2], "tflite: malformed file"},
		{"truncated-end", full[:len(full)-4096], "tflite:"},
		{"squared-difference", tflitetest.TinyModel(99), "unsupported TFLite operator SQUARED_DIFFERENCE"},
		{"custom-code-300", tflitetest.TinyModel(300), "unsupported TFLite operator BUILTIN_OPERATOR_300"},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name+".tflite")
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Import(p, ImportOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	if _, err := Import(filepath.Join(dir, "missing.tflite"), ImportOptions{}); err == nil {
		t.Error("missing file: no error")
	}
}

// TestImportONNX re-imports the exported MobileNetV2 teacher under its
// internal tensor names and checks that the aliased outputs equal the
// original teacher's features.
func TestImportONNX(t *testing.T) {
	te := importShared(t, v2Path)
	model, err := te.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	// Rename the input to check that ImportONNX renames it back.
	b, err := onnxb.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RenameValue(InputImage, "pixel_values"); err != nil {
		t.Fatal(err)
	}
	b.ClearOutputs()
	b.Output("logits", onnx.TensorProto_FLOAT)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "backbone.onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ImportONNX(p, []string{te.Features[0], "no_such_value", te.Features[2]}); err == nil || !strings.Contains(err.Error(), "no_such_value") {
		t.Errorf("unknown feature output: err %v", err)
	}
	if _, err := ImportONNX(p, te.Features[:2]); err == nil {
		t.Error("two features accepted")
	}
	imp, err := ImportONNX(p, te.Features[:])
	if err != nil {
		t.Fatal(err)
	}
	if imp.FeatureChannels() != te.FeatureChannels() {
		t.Errorf("channels %v, want %v", imp.FeatureChannels(), te.FeatureChannels())
	}
	const s = 64
	img := make([]float32, 2*3*s*s)
	for i := range img {
		img[i] = float32(i%251) / 250
	}
	in := ort.Tensor{Shape: []int64{2, 3, s, s}, Data: img}
	outNames := append([]string{OutputLogits}, FeatureOutputs[:]...)
	want, err := session(t, te, outNames, 1).Run(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := session(t, imp, outNames, 1).Run(in)
	if err != nil {
		t.Fatal(err)
	}
	for k := range want {
		if len(got[k].Data) != len(want[k].Data) {
			t.Fatalf("%s: %d values, want %d", outNames[k], len(got[k].Data), len(want[k].Data))
		}
		for i := range want[k].Data {
			if got[k].Data[i] != want[k].Data[i] {
				t.Fatalf("%s[%d] = %v, want %v", outNames[k], i, got[k].Data[i], want[k].Data[i])
			}
		}
	}
	// With normalisation: (x − 0.5)/0.5 fed to the same graph equals the
	// original teacher on 0.5 + x/2... check the prelude runs and changes the output.
	norm, err := ImportONNX(p, te.Features[:], ONNXOptions{Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	half := make([]float32, len(img))
	for i, v := range img {
		half[i] = 0.5 + v/2 // normalises back to v
	}
	got2, err := session(t, norm, outNames, 1).Run(ort.Tensor{Shape: in.Shape, Data: half})
	if err != nil {
		t.Fatal(err)
	}
	var maxd float64
	for i, v := range want[1].Data {
		maxd = math.Max(maxd, math.Abs(float64(v-got2[1].Data[i])))
	}
	if maxd > 1e-3 {
		t.Errorf("normalised import differs by %g", maxd)
	}
}

// TestBuildFeatures embeds the pruned teacher into a host graph and
// checks it against the full teacher.
func TestBuildFeatures(t *testing.T) {
	te := importShared(t, v2Path)
	b := onnxb.New()
	img := b.Input("x", onnx.TensorProto_FLOAT, "N", 3, "H", "W")
	feats, err := te.BuildFeatures(b, img, "teacher/")
	if err != nil {
		t.Fatal(err)
	}
	// A toy score: the mean of the deepest features.
	score := b.Op("ReduceMean", []string{feats[2]}, onnxb.Attrs{"axes": []int{1, 2, 3}, "keepdims": 0})
	b.Output(b.Identity(score, "score"), onnx.TensorProto_FLOAT, "N")
	b.Output(b.Identity(feats[0], "f4"), onnx.TensorProto_FLOAT)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	host, err := ort.NewSession(data, nil, []string{"score", "f4"}, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	const s = 64
	img1 := make([]float32, 3*s*s)
	for i := range img1 {
		img1[i] = float32(i%97) / 96
	}
	in := ort.Tensor{Shape: []int64{1, 3, s, s}, Data: img1}
	got, err := host.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := session(t, te, []string{"feat_s4", "feat_s16"}, 1).Run(in)
	if err != nil {
		t.Fatal(err)
	}
	var mean float64
	for _, v := range want[1].Data {
		mean += float64(v)
	}
	mean /= float64(len(want[1].Data))
	if math.Abs(mean-float64(got[0].Data[0])) > 1e-4 {
		t.Errorf("score %v, want %v", got[0].Data[0], mean)
	}
	for i, v := range want[0].Data {
		if got[1].Data[i] != v {
			t.Fatalf("f4[%d] = %v, want %v", i, got[1].Data[i], v)
		}
	}
	full, _ := te.ONNX()
	t.Logf("teacher ONNX %d bytes; features-only graph %d bytes; MACs at 256x256: full %.3fG, features only %.3fG",
		len(full), len(data), float64(te.Program.MACs(256, 256))/1e9, float64(mustPrune(t, te).MACs(256, 256))/1e9)
}

func mustPrune(t *testing.T, te *Teacher) *Program {
	p, err := te.Program.Prune(te.Features[:]...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzFromTFLite converts arbitrary (parsable) models: errors are fine,
// panics are not.
func FuzzFromTFLite(f *testing.F) {
	for _, code := range []int32{0, 3, 4, 9, 18, 22, 25, 40, 99, 117} {
		f.Add(tflitetest.TinyModel(code))
	}
	for _, rel := range []string{v2Path, v3Path, edgeTPUPath} {
		if p, err := shared.Path(rel); err == nil {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := tflite.Parse(b)
		if err != nil {
			return
		}
		p, err := FromTFLite(m)
		if err != nil {
			return
		}
		p.MACs(64, 64)
		if feats, err := defaultFeatures(p); err == nil {
			for k, name := range feats {
				if name == "" {
					t.Errorf("defaultFeatures: no feature %d and no error", k)
				}
			}
		}
		// "x" is undefined: Build must still not panic, and a success names
		// every op's output.
		if names, err := p.Build(onnxb.New(), "x", ""); err == nil {
			for _, op := range p.Ops {
				if _, ok := names[op.Output]; !ok {
					t.Errorf("Build: no node for %s and no error", op.Output)
				}
			}
		}
	})
}
