package score

import (
	"math"
	"reflect"
	"testing"

	"github.com/multiad/multiad/internal/gobcoder"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/transforms/read"
)

// testResult is a Result with every field set, its map s×s.
func testResult(s int) Result {
	m := make([]float32, s*s)
	for i := range m {
		m[i] = float32(math.Sin(float64(i))) * 3
	}
	m[1] = float32(math.Copysign(0, -1))
	return Result{Item: read.Item{URI: "gs://b/x.dcm", Index: 2, Label: 1, Group: "crack", Meta: map[string]string{"site": "a"}},
		Score: 0.8125, Anomalous: true, Size: s, Map: m, Gray: make([]uint8, s*s), Rows: 3, Cols: 5, Normalized: 0.7,
		View: []uint8{1, 2, 3}, Truth: []uint8{0, 1}, Domain: "MR 1ch 16-bit", Identity: &pixels.Identity{PatientName: "Doe^J"}}
}

// TestResultCoder: a Result comes back equal, its map bit for bit, and
// the map travels in 4 bytes a value.
func TestResultCoder(t *testing.T) {
	for _, in := range []Result{testResult(16), {Item: read.Item{URI: "a.png"}, Score: 1}} {
		b, err := encodeResult(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := decodeResult(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out, in) {
			t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
		}
		for i := range in.Map {
			if math.Float32bits(out.Map[i]) != math.Float32bits(in.Map[i]) {
				t.Fatalf("map[%d]: bits %#x, want %#x", i, math.Float32bits(out.Map[i]), math.Float32bits(in.Map[i]))
			}
		}
	}
	r := testResult(256)
	b, err := encodeResult(r)
	if err != nil {
		t.Fatal(err)
	}
	if max := 4*len(r.Map) + len(r.Gray) + 2000; len(b) > max {
		t.Errorf("a 256 px result encodes in %d bytes, want at most %d", len(b), max)
	}
	if _, err := decodeResult(b[:len(b)/2]); err == nil {
		t.Error("half a result decoded without error")
	}
}

// BenchmarkResultCoder compares the Result coder with gob of the Result
// as it is (each float a variable-length integer).
func BenchmarkResultCoder(b *testing.B) {
	r := testResult(256)
	b.Run("wire", func(b *testing.B) {
		for b.Loop() {
			if _, err := encodeResult(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain-gob", func(b *testing.B) {
		for b.Loop() {
			if _, err := gobcoder.Encode(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
