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
//
// A type whose bulk is one []float32 field (an anomaly map) uses
// EncodeFloats and DecodeFloats instead: gob writes each float on its own,
// and the field then travels as one block of little-endian bytes.
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

// float32s is a []float32 that gob carries as its little-endian IEEE 754
// bits, one block of bytes. Gob writes each float as a variable-length
// integer through its reflection loop, which made the anomaly maps most of
// an element's encoding time (bench/BENCHMARKS.md). EncodeFloats uses it;
// a nil or empty slice decodes as nil, as gob's own slices do.
type float32s []float32

// GobEncode returns f's little-endian bits.
func (f float32s) GobEncode() ([]byte, error) {
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b, nil
}

// GobDecode sets *f from GobEncode's bytes.
func (f *float32s) GobDecode(b []byte) error {
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

// floatsWire is a T on the wire with one of its []float32 fields carried
// as float32s.
type floatsWire[T any] struct {
	V T // the field is nil here
	F float32s
}

// EncodeFloats is Encode for a T with one large []float32 field (an
// anomaly map), which field points to: the field travels as its raw
// little-endian bits (float32s).
//
//	func mapOf(r *Result) *[]float32 { return &r.Map }
//	func encodeResult(v Result) ([]byte, error) { return gobcoder.EncodeFloats(v, mapOf) }
func EncodeFloats[T any](v T, field func(*T) *[]float32) ([]byte, error) {
	w := floatsWire[T]{V: v}
	f := field(&w.V)
	w.F, *f = *f, nil
	return Encode(w)
}

// DecodeFloats decodes what EncodeFloats encoded, with the same field.
func DecodeFloats[T any](b []byte, field func(*T) *[]float32) (T, error) {
	w, err := Decode[floatsWire[T]](b)
	*field(&w.V) = w.F
	return w.V, err
}
