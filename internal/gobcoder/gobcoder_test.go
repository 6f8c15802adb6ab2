package gobcoder

import (
	"math"
	"reflect"
	"testing"
)

type elem struct {
	URI  string
	Map  []float32
	Mask []uint8
	Meta map[string]string
	Ptr  *int
}

func TestRoundTrip(t *testing.T) {
	n := 7
	in := elem{URI: "gs://b/x.dcm", Map: []float32{0, 1.5, -2e-9}, Mask: []uint8{0, 1, 1}, Meta: map[string]string{"patient": "p1"}, Ptr: &n}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode[elem](b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip: %+v != %+v", out, in)
	}
	if _, err := Decode[elem]([]byte{0xff, 0x01}); err == nil {
		t.Error("garbage decoded without error")
	}
}

// TestFloat32Bits: every bit pattern comes back (NaN payloads, -0, ±Inf,
// subnormals), in 4 bytes a value; nil and empty decode as nil, and a
// length that is not a multiple of 4 is an error.
func TestFloat32Bits(t *testing.T) {
	type wire struct {
		Name string
		Map  float32s
	}
	in := float32s{0, float32(math.Copysign(0, -1)), 1.5, -2e-9, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00001), math.Float32frombits(1), math.MaxFloat32}
	b, err := Encode(wire{"m", in})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode[wire](b)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Map) != len(in) {
		t.Fatalf("decoded %d values, want %d", len(out.Map), len(in))
	}
	for i := range in {
		if math.Float32bits(out.Map[i]) != math.Float32bits(in[i]) {
			t.Errorf("[%d]: bits %#x, want %#x", i, math.Float32bits(out.Map[i]), math.Float32bits(in[i]))
		}
	}
	big := make(float32s, 1<<16)
	for i := range big {
		big[i] = float32(i) / 7
	}
	if b, err := Encode(wire{"m", big}); err != nil || len(b) > 4*len(big)+100 {
		t.Errorf("a %d-value map encodes in %d bytes (%v), want about %d", len(big), len(b), err, 4*len(big))
	}
	for _, m := range []float32s{nil, {}} {
		b, err := Encode(wire{"m", m})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := Decode[wire](b); err != nil || out.Map != nil || out.Name != "m" {
			t.Errorf("%#v: decoded %+v, %v; want a nil map", m, out, err)
		}
	}
	var f float32s
	if err := f.GobDecode([]byte{1, 2, 3}); err == nil {
		t.Error("3 bytes decoded as float32s")
	}
}

// TestEncodeFloats: the named field travels once, as raw bits, and comes
// back in place; the other fields as gob carries them.
func TestEncodeFloats(t *testing.T) {
	mapOf := func(e *elem) *[]float32 { return &e.Map }
	in := elem{URI: "a.png", Map: make([]float32, 1000), Mask: []uint8{1}}
	for i := range in.Map {
		in.Map[i] = float32(i) * 1.1
	}
	b, err := EncodeFloats(in, mapOf)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 4*len(in.Map)+400 {
		t.Errorf("%d bytes for a %d-value map, want it once, 4 bytes a value", len(b), len(in.Map))
	}
	out, err := DecodeFloats(b, mapOf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip: %+v != %+v", out, in)
	}
	if in.Map[1] != float32(1.1) {
		t.Error("EncodeFloats changed its argument's map")
	}
}
