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
	"encoding/gob"
	"fmt"
	"io"
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
