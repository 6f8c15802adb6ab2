package onnxb

import (
	"math"
	"strings"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/ort"
)

// conv3 computes a 3×3 convolution with padding 1 of a 1-channel image
// directly, as the reference for the ONNX graph.
func conv3(img []float32, h, w int, k []float32, bias float32) []float32 {
	out := make([]float32, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			s := bias
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					yy, xx := y+dy, x+dx
					if yy >= 0 && yy < h && xx >= 0 && xx < w {
						s += img[yy*w+xx] * k[(dy+1)*3+dx+1]
					}
				}
			}
			out[y*w+x] = s
		}
	}
	return out
}

func smallGraph(t *testing.T) (*Builder, []float32) {
	b := New()
	x := b.Input("image", onnx.TensorProto_FLOAT, "N", 1, "H", "W")
	k := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	w := b.Const("w", []int64{1, 1, 3, 3}, k)
	bias := b.Const("b", []int64{1}, []float32{-0.5})
	y := b.Op("Conv", []string{x, w, bias}, Attrs{"pads": []int64{1, 1, 1, 1}, "strides": []int{1, 1}, "kernel_shape": []int{3, 3}})
	r := b.Op("Clip", []string{y, b.Scalar("lo", 0), b.Scalar("hi", 20)}, nil)
	b.Output(b.Identity(r, "out"), onnx.TensorProto_FLOAT, "N", 1, "H", "W")
	return b, k
}

// run runs model in ONNX Runtime (CPU, one thread) on its inputs and
// returns all its outputs.
func run(t *testing.T, model []byte, in ...ort.Tensor) []ort.Tensor {
	t.Helper()
	sess, err := ort.NewSession(model, nil, nil, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Run(in...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuildAndRun(t *testing.T) {
	b, k := smallGraph(t)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, hw := range [][2]int{{4, 5}, {7, 3}} {
		h, w := hw[0], hw[1]
		img := make([]float32, 2*h*w)
		for i := range img {
			img[i] = float32(i%7)/3 - 1
		}
		outs := run(t, data, ort.Tensor{Shape: []int64{2, 1, int64(h), int64(w)}, Data: img})
		for n := 0; n < 2; n++ {
			want := conv3(img[n*h*w:(n+1)*h*w], h, w, k, -0.5)
			for i, v := range want {
				v = float32(math.Min(20, math.Max(0, float64(v))))
				if d := math.Abs(float64(outs[0].Data[n*h*w+i] - v)); d > 1e-5 {
					t.Fatalf("%dx%d image %d pixel %d: %v, want %v", h, w, n, i, outs[0].Data[n*h*w+i], v)
				}
			}
		}
	}
}

func TestEmbed(t *testing.T) {
	sub, k := smallGraph(t)
	host := New()
	x := host.Input("x", onnx.TensorProto_FLOAT, "N", 1, "H", "W")
	neg := host.Op("Neg", []string{x}, nil)
	outs, err := host.Embed(sub, "a/", map[string]string{"image": x})
	if err != nil {
		t.Fatal(err)
	}
	outs2, err := host.Embed(sub, "b/", map[string]string{"image": neg})
	if err != nil {
		t.Fatal(err)
	}
	if outs["out"] != "a/out" || outs2["out"] != "b/out" {
		t.Fatalf("outputs %v %v", outs, outs2)
	}
	sum := host.Op("Add", []string{outs["out"], outs2["out"]}, nil)
	host.Output(sum, onnx.TensorProto_FLOAT)
	data, err := host.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	img := []float32{1, -2, 3, 0.5, 0, 2, -1, 1, 1}
	res := run(t, data, ort.Tensor{Shape: []int64{1, 1, 3, 3}, Data: img})
	negImg := make([]float32, len(img))
	for i, v := range img {
		negImg[i] = -v
	}
	a, c := conv3(img, 3, 3, k, -0.5), conv3(negImg, 3, 3, k, -0.5)
	for i := range a {
		want := float32(math.Min(20, math.Max(0, float64(a[i])))) + float32(math.Min(20, math.Max(0, float64(c[i]))))
		if math.Abs(float64(res[0].Data[i]-want)) > 1e-5 {
			t.Fatalf("pixel %d: %v, want %v", i, res[0].Data[i], want)
		}
	}
	// Errors: unbound input, clashing prefix, opset mismatch.
	if _, err := host.Embed(sub, "c/", nil); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Errorf("unbound input: %v", err)
	}
	if _, err := host.Embed(sub, "a/", map[string]string{"image": x}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("prefix clash: %v", err)
	}
	if _, err := NewOpset(13).Embed(sub, "", nil); err == nil || !strings.Contains(err.Error(), "opset") {
		t.Errorf("opset mismatch: %v", err)
	}
	// Round trip through Load.
	back, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Inputs(); len(got) != 1 || got[0] != "x" {
		t.Errorf("loaded inputs %v", got)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name  string
		build func(b *Builder)
		want  string
	}{
		{"undefined input", func(b *Builder) { b.Output(b.Op("Relu", []string{"nope"}, nil), onnx.TensorProto_FLOAT) }, "not defined"},
		{"duplicate", func(b *Builder) {
			x := b.Input("x", onnx.TensorProto_FLOAT, 1)
			b.Node("Relu", []string{x}, []string{"x"}, nil)
		}, "defined twice"},
		{"bad attr", func(b *Builder) {
			x := b.Input("x", onnx.TensorProto_FLOAT, 1)
			b.Output(b.Op("Relu", []string{x}, Attrs{"a": struct{}{}}), onnx.TensorProto_FLOAT)
		}, "unsupported type"},
		{"bad const", func(b *Builder) {
			b.Const("c", []int64{2, 2}, []float32{1})
		}, "does not hold"},
		{"no output", func(b *Builder) { b.Input("x", onnx.TensorProto_FLOAT, 1) }, "no output"},
		{"bad dim", func(b *Builder) { b.Input("x", onnx.TensorProto_FLOAT, 1.5) }, "dimension"},
		{"unknown output", func(b *Builder) { b.Output("y", onnx.TensorProto_FLOAT) }, "not a value"},
	}
	for _, c := range cases {
		b := New()
		c.build(b)
		_, err := b.Marshal()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := Load([]byte("not a model")); err == nil {
		t.Error("Load of garbage: no error")
	}
}

func TestAttribute(t *testing.T) {
	for _, c := range []struct {
		v    any
		want onnx.AttributeProto_AttributeType
	}{
		{3, onnx.AttributeProto_INT}, {int64(3), onnx.AttributeProto_INT}, {float32(1), onnx.AttributeProto_FLOAT},
		{1.5, onnx.AttributeProto_FLOAT}, {"s", onnx.AttributeProto_STRING}, {[]int{1}, onnx.AttributeProto_INTS},
		{[]int64{1}, onnx.AttributeProto_INTS}, {[]float32{1}, onnx.AttributeProto_FLOATS},
		{[]float64{1}, onnx.AttributeProto_FLOATS}, {[]string{"a"}, onnx.AttributeProto_STRINGS},
		{&onnx.TensorProto{}, onnx.AttributeProto_TENSOR}, {&onnx.GraphProto{}, onnx.AttributeProto_GRAPH},
	} {
		a, err := Attribute("a", c.v)
		if err != nil || a.Type != c.want {
			t.Errorf("Attribute(%T): %v %v", c.v, a, err)
		}
	}
}

// TestTranspose checks Transpose against ONNX Runtime's Transpose operator
// for every permutation of a rank-4 tensor and a few other ranks, and its
// errors.
func TestTranspose(t *testing.T) {
	cases := []struct {
		dims, perm []int
	}{{[]int{5}, []int{0}}, {[]int{3, 4}, []int{1, 0}}, {[]int{2, 3, 4}, []int{2, 0, 1}}, {[]int{3, 1, 2, 5}, []int{0, 1, 2, 3}}}
	for _, p := range permutations([]int{0, 1, 2, 3}) {
		cases = append(cases, struct{ dims, perm []int }{[]int{2, 3, 4, 5}, p})
	}
	for _, c := range cases {
		n := 1
		shape := make([]int64, len(c.dims))
		for i, d := range c.dims {
			n, shape[i] = n*d, int64(d)
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(i)
		}
		got, err := Transpose(x, c.dims, c.perm...)
		if err != nil {
			t.Fatal(err)
		}
		b := New()
		in := b.Input("x", onnx.TensorProto_FLOAT, anyDims(shape)...)
		b.Output(b.Identity(b.Op("Transpose", []string{in}, Attrs{"perm": c.perm}), "y"), onnx.TensorProto_FLOAT)
		m, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out := run(t, m, ort.Tensor{Shape: shape, Data: x})
		for i, v := range out[0].Data {
			if got[i] != v {
				t.Fatalf("dims %v perm %v: value %d is %v, ONNX Runtime %v", c.dims, c.perm, i, got[i], v)
			}
		}
	}
	for _, c := range []struct {
		n          int
		dims, perm []int
	}{{6, []int{2, 2}, []int{1, 0}}, {4, []int{2, 2}, []int{0}}, {4, []int{2, 2}, []int{0, 0}}, {4, []int{2, 2}, []int{0, 2}}, {4, []int{-2, -2}, []int{1, 0}}} {
		if _, err := Transpose(make([]float32, c.n), c.dims, c.perm...); err == nil {
			t.Errorf("Transpose of %d values, dims %v, perm %v: no error", c.n, c.dims, c.perm)
		}
	}
}

func permutations(a []int) [][]int {
	if len(a) <= 1 {
		return [][]int{append([]int(nil), a...)}
	}
	var out [][]int
	for i := range a {
		rest := append(append([]int(nil), a[:i]...), a[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]int{a[i]}, p...))
		}
	}
	return out
}

func anyDims(shape []int64) []any {
	out := make([]any, len(shape))
	for i, d := range shape {
		out[i] = int(d)
	}
	return out
}
