package ort_test

import (
	"math"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
)

// TestUnoptimizedKeepsQDQ runs DequantizeLinear → Conv (float weights) →
// QuantizeLinear, the fake quantization the teacher tests build, and checks
// that Unoptimized computes it as written: the float weights used as they
// are. With its rewrites on, ONNX Runtime 1.24 re-quantizes the weights to
// symmetric int8 and runs QLinearConv instead (logged, not asserted).
func TestUnoptimizedKeepsQDQ(t *testing.T) {
	const n = 64
	w := make([]float32, n)
	x := make([]float32, n)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)*1.7)) * 0.9 // not on a 1/127 grid
		x[i] = float32(i%13) / 4
	}
	const s1, s2, zp2 = 1.0 / 16, 1.0 / 256, 255 // y in [-255/256, 0]
	b := onnxb.New()
	in := b.Input("x", onnx.TensorProto_FLOAT, 1, n, 1, 1)
	sc1, sc2 := b.Scalar("s1", s1), b.Scalar("s2", s2)
	z1 := b.ConstRaw("z1", onnx.TensorProto_UINT8, []int64{}, []byte{0})
	z2 := b.ConstRaw("z2", onnx.TensorProto_UINT8, []int64{}, []byte{zp2})
	d1 := b.Op("DequantizeLinear", []string{b.Op("QuantizeLinear", []string{in, sc1, z1}, nil), sc1, z1}, nil)
	y := b.Op("Conv", []string{d1, b.Const("w", []int64{1, n, 1, 1}, w)}, onnxb.Attrs{"kernel_shape": []int{1, 1}})
	b.Node("DequantizeLinear", []string{b.Op("QuantizeLinear", []string{y, sc2, z2}, nil), sc2, z2}, []string{"y"}, nil)
	b.Output("y", onnx.TensorProto_FLOAT)
	model, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The graph as written: x is on its grid already, y is a float sum.
	var sum float64
	for i := range w {
		sum += float64(x[i]) * float64(w[i])
	}
	want := math.RoundToEven(sum/s2) * s2
	if want < -255*s2 || want > 0 {
		t.Fatalf("y = %v is outside the output grid", sum)
	}
	run := func(opt ort.Options) float64 {
		s, err := ort.NewSession(model, nil, nil, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run(ort.Tensor{Shape: []int64{1, n, 1, 1}, Data: x})
		if err != nil {
			t.Fatal(err)
		}
		return float64(out[0].Data[0])
	}
	got := run(ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1, Unoptimized: true})
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("Unoptimized: y = %v (%.0f steps of 1/256), want %v (%.0f)", got, got/s2, want, want/s2)
	}
	opt := run(ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1})
	t.Logf("y: as written %v; Unoptimized %v; optimized %v (%+.0f steps of 1/256)", want, got, opt, (opt-want)/s2)
}

// TestNewSessionNames checks that NewSession, given input and output
// names, refuses names the graph does not have, naming the missing one
// and the graph's own (ONNX Runtime would build the session and fail every
// Run), and builds the session when they are right.
func TestNewSessionNames(t *testing.T) {
	b := onnxb.New()
	in := b.Input("x", onnx.TensorProto_FLOAT, 1, 2)
	b.Node("Neg", []string{in}, []string{"y"}, nil)
	b.Output("y", onnx.TensorProto_FLOAT)
	model, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	opt := ort.Options{Device: ort.DeviceCPU, IntraOpThreads: 1}
	for _, c := range []struct {
		inputs, outputs []string
		want            string // "" when the session must build
	}{
		{[]string{"x"}, []string{"y"}, ""},
		{nil, []string{"y"}, ""},
		{[]string{"x"}, nil, ""},
		{[]string{"image"}, []string{"y"}, `no input "image" (its inputs: x)`},
		{[]string{"x"}, []string{"y", "score"}, `no output "score" (its outputs: y)`},
		{nil, []string{"score"}, `no output "score"`},
	} {
		s, err := ort.NewSession(model, c.inputs, c.outputs, opt)
		if c.want == "" {
			if err != nil {
				t.Errorf("%v → %v: %v", c.inputs, c.outputs, err)
				continue
			}
			out, err := s.Run(ort.Tensor{Shape: []int64{1, 2}, Data: []float32{1, -2}})
			if err != nil || len(out) != 1 || out[0].Data[0] != -1 || out[0].Data[1] != 2 {
				t.Errorf("%v → %v: Run = %v, %v", c.inputs, c.outputs, out, err)
			}
			s.Close()
			continue
		}
		if err == nil {
			s.Close()
			t.Errorf("%v → %v: no error", c.inputs, c.outputs)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v → %v: error %q, want it to say %q", c.inputs, c.outputs, err, c.want)
		}
	}
	if _, err := ort.NewSession([]byte("not a model"), []string{"x"}, []string{"y"}, opt); err == nil {
		t.Error("garbage model with names: no error")
	}
}
