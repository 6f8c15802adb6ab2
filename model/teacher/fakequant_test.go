package teacher

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
)

// TestFakeQuantMatchesReference simulates the quantized model (every
// activation rounded to its uint8 grid) and compares its uint8 output with
// Arm NN's: this checks the conversion itself (layouts, padding, constants)
// independently of the float/quantized gap.
//
// The simulation runs unoptimized on one thread: with its graph rewrites on,
// ONNX Runtime 1.24 re-quantizes the (already dequantized) weights of every
// Conv between DequantizeLinear and QuantizeLinear to int8 and fuses it into
// QLinearConv, simulating another model; on CPUs with AMX its integer kernel
// then gave wrong, run-to-run different outputs (MobileNetV2 mean |diff|
// 4–13 on the reference images; 1.0–1.7 with AMX blocked; 0.46–0.58 for the
// simulation as written, the same with or without AMX).
//
// MobileNetV3's output is a uint8 softmax, 0 for most of the 1001 classes on
// both sides, so its mean |diff| stays small even for a broken conversion
// (a wrong SAME padding side passes it): MobileNetV2's logits are the check.
func TestFakeQuantMatchesReference(t *testing.T) {
	refs := refOutputs(t)
	batch := make([]float32, 0, len(refImages)*3*224*224)
	for _, name := range refImages {
		batch = append(batch, refInput(t, name)...)
	}
	for _, rel := range []string{v2Path, v3Path} {
		t.Run(filepath.Base(rel), func(t *testing.T) {
			te := importShared(t, rel)
			p := te.Program
			b := onnxb.New()
			img := b.Input(InputImage, onnx.TensorProto_FLOAT, "N", 3, "H", "W")
			names, err := p.build(b, img, "", true)
			if err != nil {
				t.Fatal(err)
			}
			b.Output(names[p.Output], onnx.TensorProto_FLOAT)
			model, err := b.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			sess, err := ort.NewSession(model, nil, nil, ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1, Unoptimized: true})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			outs, err := sess.Run(ort.Tensor{Shape: []int64{5, 3, 224, 224}, Data: batch})
			if err != nil {
				t.Fatal(err)
			}
			q := p.producer(p.Output).Quant
			ref := refs[strings.TrimPrefix(rel, "weights/")]
			for i, name := range refImages {
				r := ref[name]
				var sumAbs, maxAbs float64
				exact := 0
				ours := make([]float64, 1001)
				for c := 0; c < 1001; c++ {
					u := math.Round(float64(outs[0].Data[i*1001+c]/q.Scale)) + float64(q.ZeroPoint)
					ours[c] = u
					d := math.Abs(u - r.ScoresUint8[c])
					sumAbs += d
					maxAbs = math.Max(maxAbs, d)
					if d == 0 {
						exact++
					}
				}
				top := TopK(toF32(ours), 5)
				t.Logf("%-14s simulated uint8 output: %d/1001 equal to Arm NN's, mean |diff| %.2f, max %.0f; top1 %d (ref %d) spearman %.4f",
					name, exact, sumAbs/1001, maxAbs, top[0].Class, r.Top5[0], spearman(ours, r.ScoresUint8))
				if sumAbs/1001 > 3 {
					t.Errorf("%s: mean |uint8 diff| %.2f > 3: the conversion differs from the quantized model", name, sumAbs/1001)
				}
			}
		})
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
