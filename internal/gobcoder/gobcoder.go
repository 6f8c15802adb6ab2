// Package gobcoder provides gob-based Beam coders for element types that
// carry large numeric slices (pixels, anomaly maps, masks): Beam's default
// schema coder encodes every float through reflection, which measured as
// about a quarter of the scoring pipeline's CPU (bench/BENCHMARKS.md), and
// drops unexported or pointer fields that gob keeps.
//
// Register a type with named functions that call Encode and Decode (Beam
// finds coder functions by symbol name, and generic instantiations share
// one):
//
//	func encodeX(v X) ([]byte, error) { return gobcoder.Encode(v) }
//	func decodeX(b []byte) (X, error) { return gobcoder.Decode[X](b) }
//	beam.RegisterCoder(reflect.TypeOf(X{}), encodeX, decodeX)
package gobcoder

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"
	"math"
)

// Encode gob-encodes v.
func Encode[T any](v T) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, fmt.Errorf("gobcoder: encoding %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

// Decode gob-decodes a T.
func Decode[T any](b []byte) (T, error) {
	var v T
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil && err != io.EOF {
		return v, fmt.Errorf("gobcoder: decoding %T: %w", v, err)
	}
	return v, nil
}

// Float32s is a []float32 that gob carries as its little-endian IEEE 754
// bits, one block of bytes. Gob writes each float as a variable-length
// integer through its reflection loop, which made the anomaly maps most of
// an element's encoding time (bench/BENCHMARKS.md). Use it in a coder's
// wire struct for a large []float32 field; like any gob field, a nil or
// empty slice is not sent and decodes as nil.
type Float32s []float32

// GobEncode returns f's little-endian bits.
func (f Float32s) GobEncode() ([]byte, error) {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b, nil
}

// GobDecode sets *f from GobEncode's bytes.
func (f *Float32s) GobDecode(b []byte) error {
	if len(b)%4 != 0 {
		return fmt.Errorf("gobcoder: %d bytes are not a whole number of float32s", len(b))
	}
	if len(b) == 0 {
		*f = nil
		return nil
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	*f = v
	return nil
}
