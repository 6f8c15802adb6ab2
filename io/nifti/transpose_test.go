package nifti

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestTransposeScalar checks the typed fast path against the generic
// voxel-by-voxel transpose for every scalar type, in both byte orders.
func TestTransposeScalar(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, code := range []int16{DTUint8, DTInt8, DTInt16, DTUint16, DTInt32, DTUint32, DTFloat32, DTFloat64, DTInt64, DTUint64, DTRGB24, DTRGBA32} {
		e, err := (&Header{Datatype: code}).elem()
		if err != nil {
			t.Fatal(err)
		}
		for _, big := range []bool{false, true, false, true, false, true} {
			// Sizes on both sides of the tile edge, and the common 256.
			rows, cols := 1+r.IntN(9), 1+r.IntN(9)
			if r.IntN(2) == 0 {
				rows, cols = 1+r.IntN(100), 1+r.IntN(100)
			}
			if code == DTUint8 && !big {
				rows, cols = 256, 256
			}
			src := make([]byte, rows*cols*e.size)
			for i := range src {
				src[i] = byte(r.IntN(256))
			}
			n := rows * cols * e.channels * e.dtype.Size()
			want, got := make([]byte, n), make([]byte, n)
			transposeGeneric(want, src, rows, cols, e, big)
			transpose(got, src, rows, cols, e, big)
			if !bytes.Equal(got, want) {
				t.Errorf("datatype %d big-endian %v %dx%d: fast %v, generic %v", code, big, rows, cols, got, want)
			}
		}
	}
}
