package gobcoder

import (
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
