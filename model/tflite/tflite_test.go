package tflite

import (
	"math/rand"
	"os"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/tflite/tflitetest"
)

const v2Rel = "weights/mobilenet_v2/mobilenet_v2_1.0_224.uint8.tflite"

func TestTinyModel(t *testing.T) {
	for _, code := range []int32{int32(OpAdd), 99, int32(OpHardSwish), 300} {
		m, err := Parse(tflitetest.TinyModel(code))
		if err != nil {
			t.Fatalf("code %d: %v", code, err)
		}
		sg := m.Subgraphs[0]
		if m.Description != "tiny" || sg.Name != "main" || len(sg.Tensors) != 2 || sg.Tensors[1].Name != "out" ||
			len(sg.Operators) != 1 || m.OperatorCodes[0].Builtin != BuiltinOperator(code) {
			t.Errorf("code %d: parsed %+v", code, m)
		}
	}
	if got := BuiltinOperator(99).String(); got != "SQUARED_DIFFERENCE" {
		t.Errorf("name of 99: %s", got)
	}
	if got := BuiltinOperator(300).String(); got != "BUILTIN_OPERATOR_300" {
		t.Errorf("name of 300: %s", got)
	}
}

func TestMobileNetV2(t *testing.T) {
	m, err := ReadFile(shared.MustPath(t, v2Rel))
	if err != nil {
		t.Fatal(err)
	}
	sg := m.Subgraphs[0]
	in := sg.Tensors[sg.Inputs[0]]
	if in.Name != "input" || in.Type != TypeUint8 || in.Quant.Scale[0] != 1.0/128 || in.Quant.ZeroPoint[0] != 128 {
		t.Errorf("input %+v %+v", in, in.Quant)
	}
	counts := map[string]int{}
	for _, op := range sg.Operators {
		counts[m.OperatorCodes[op.OpcodeIndex].Name()]++
	}
	// MobileNetV2: 52 convolutions (35 1×1 or 3×3 plus 17 depthwise), 10 residual adds.
	want := map[string]int{"CONV_2D": 36, "DEPTHWISE_CONV_2D": 17, "ADD": 10, "AVERAGE_POOL_2D": 1, "RESHAPE": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s: %d ops, want %d (all: %v)", k, counts[k], v, counts)
		}
	}
	op := sg.Operators[0]
	o, ok := op.Options.(*Conv2DOptions)
	if !ok || o.StrideH != 2 || o.StrideW != 2 || o.Padding != PaddingSame || o.DilationH != 1 {
		t.Errorf("first op options %+v", op.Options)
	}
	w := sg.Tensors[op.Inputs[1]]
	vals, err := m.Float32(&w)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := m.Data(&w)
	if len(vals) != 32*3*3*3 || vals[7] != (float32(raw[7])-float32(w.Quant.ZeroPoint[0]))*w.Quant.Scale[0] {
		t.Errorf("dequantized weights: %d values, [7]=%v", len(vals), vals[7])
	}
}

func TestDequantize(t *testing.T) {
	m := &Model{Buffers: [][]byte{nil, {0, 10, 255, 128, 1, 2}, {0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0}}}
	cases := []struct {
		t    Tensor
		want []float32
	}{
		{Tensor{Name: "per-tensor", Shape: []int32{6}, Type: TypeUint8, Buffer: 1,
			Quant: &Quantization{Scale: []float32{0.5}, ZeroPoint: []int64{10}}}, []float32{-5, 0, 122.5, 59, -4.5, -4}},
		{Tensor{Name: "per-channel", Shape: []int32{2, 3}, Type: TypeUint8, Buffer: 1,
			Quant: &Quantization{Scale: []float32{1, 2}, ZeroPoint: []int64{0, 1}}}, []float32{0, 10, 255, 254, 0, 2}},
		{Tensor{Name: "per-channel-last", Shape: []int32{3, 2}, Type: TypeInt8, Buffer: 1,
			Quant: &Quantization{Scale: []float32{1, 0.5}, ZeroPoint: []int64{0, 0}, QuantizedDimension: 1}}, []float32{0, 5, -1, -64, 1, 1}},
		{Tensor{Name: "bias", Shape: []int32{2}, Type: TypeInt32, Buffer: 2,
			Quant: &Quantization{Scale: []float32{0.25}, ZeroPoint: []int64{0}}}, []float32{-0.25, 0.5}},
	}
	for _, c := range cases {
		got, err := m.Float32(&c.t)
		if err != nil {
			t.Errorf("%s: %v", c.t.Name, err)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: got %v, want %v", c.t.Name, got, c.want)
				break
			}
		}
	}
	bad := []Tensor{
		{Name: "size", Shape: []int32{7}, Type: TypeUint8, Buffer: 1},
		{Name: "scales", Shape: []int32{2, 3}, Type: TypeUint8, Buffer: 1, Quant: &Quantization{Scale: []float32{1, 2, 3}}},
		{Name: "nodata", Shape: []int32{2}, Type: TypeUint8, Buffer: 0},
		{Name: "dynamic", Shape: []int32{-1, 6}, Type: TypeUint8, Buffer: 1},
	}
	for _, b := range bad {
		if _, err := m.Float32(&b); err == nil {
			t.Errorf("%s: no error", b.Name)
		}
	}
}

func TestQuantRange(t *testing.T) {
	q := &Quantization{Scale: []float32{6.0 / 255}, ZeroPoint: []int64{0}}
	if lo, hi, ok := q.Range(TypeUint8); !ok || lo != 0 || hi != 6 {
		t.Errorf("uint8 range %v %v %v", lo, hi, ok)
	}
	q = &Quantization{Scale: []float32{0.5}, ZeroPoint: []int64{-28}}
	if lo, hi, ok := q.Range(TypeInt8); !ok || lo != -50 || hi != 77.5 {
		t.Errorf("int8 range %v %v %v", lo, hi, ok)
	}
	if _, _, ok := q.Range(TypeFloat32); ok {
		t.Error("float range ok")
	}
}

// TestMalformed feeds truncated and corrupted files: each must fail with
// an error, never panic.
func TestMalformed(t *testing.T) {
	full, err := os.ReadFile(shared.MustPath(t, v2Rel))
	if err != nil {
		t.Fatal(err)
	}
	tiny := tflitetest.TinyModel(0)
	for _, n := range []int{0, 4, 7, 8, 12, 100, 1000, 4096, len(full) / 3, len(full) - 1000} {
		_, err := Parse(full[:n])
		if err == nil {
			t.Errorf("truncated at %d: no error", n)
		} else if !strings.HasPrefix(err.Error(), "tflite: ") {
			t.Errorf("truncated at %d: error without package prefix: %v", n, err)
		}
	}
	// The last bytes of a flatbuffer may be alignment padding; cutting
	// anything before them must fail.
	for n := 0; n < len(tiny); n++ {
		if _, err := Parse(tiny[:n]); err == nil && n < len(tiny)-3 {
			t.Errorf("tiny model truncated at %d/%d: no error", n, len(tiny))
		}
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.Intn(2000))
		rng.Read(b)
		if len(b) >= 8 && i%2 == 0 {
			copy(b[4:], "TFL3") // get past the identifier check
		}
		// Must not panic; a success returns a model.
		if m, err := Parse(b); err == nil && m == nil {
			t.Error("Parse returned no model and no error")
		}
	}
	// Corrupt single bytes of the tiny model.
	for i := 0; i < len(tiny); i++ {
		for _, v := range []byte{0, 0x7f, 0x80, 0xff} {
			c := append([]byte(nil), tiny...)
			c[i] = v
			if m, err := Parse(c); err == nil && m == nil {
				t.Error("Parse returned no model and no error")
			}
		}
	}
	if _, err := Parse([]byte("12345678")); err == nil || !strings.Contains(err.Error(), "TFL3") {
		t.Errorf("wrong identifier: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(tflitetest.TinyModel(int32(OpAdd)))
	f.Add(tflitetest.TinyModel(99))
	if p, err := shared.Path(v2Rel); err == nil {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b[:4096])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		for _, sg := range m.Subgraphs {
			for i := range sg.Tensors {
				v, err := m.Float32(&sg.Tensors[i])
				if err != nil {
					continue // not a constant, or not convertible: fine
				}
				if n, _ := sg.Tensors[i].NumElements(); len(v) != n {
					t.Errorf("tensor %s: %d values, want %d", sg.Tensors[i].Name, len(v), n)
				}
			}
		}
	})
}
