package tflite

import (
	"encoding/binary"
	"fmt"
	"math"
)

// NumElements returns the product of the tensor's dimensions, or an error
// for a negative (dynamic) dimension or an overflowing product.
func (t *Tensor) NumElements() (int, error) {
	n := 1
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("tflite: tensor %s has dynamic shape %v", t.Name, t.Shape)
		}
		if d > 0 && n > math.MaxInt32/int(d) {
			return 0, fmt.Errorf("tflite: tensor %s shape %v is too large", t.Name, t.Shape)
		}
		n *= int(d)
	}
	return n, nil
}

// Data returns the raw bytes of a constant tensor, checked against its
// shape and type; nil when the tensor has no data (an activation).
func (m *Model) Data(t *Tensor) ([]byte, error) {
	if int(t.Buffer) >= len(m.Buffers) || len(m.Buffers[t.Buffer]) == 0 {
		return nil, nil
	}
	b := m.Buffers[t.Buffer]
	n, err := t.NumElements()
	if err != nil {
		return nil, err
	}
	var size int
	switch t.Type {
	case TypeUint8, TypeInt8, TypeBool:
		size = 1
	case TypeInt16, TypeFloat16:
		size = 2
	case TypeFloat32, TypeInt32:
		size = 4
	case TypeInt64:
		size = 8
	default:
		return nil, fmt.Errorf("tflite: tensor %s has unsupported type %v", t.Name, t.Type)
	}
	if len(b) != n*size {
		return nil, fmt.Errorf("tflite: tensor %s (%v %v) has %d data bytes, want %d", t.Name, t.Type, t.Shape, len(b), n*size)
	}
	return b, nil
}

// Float32 returns a constant tensor's values as float32: FLOAT32 as is,
// UINT8/INT8/INT16/INT32 dequantized with the tensor's per-tensor or
// per-channel (QuantizedDimension) scale and zero point. Integer tensors
// without quantization parameters are converted as plain numbers.
func (m *Model) Float32(t *Tensor) ([]float32, error) {
	b, n, err := m.constData(t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	raw := func(i int) float64 {
		switch t.Type {
		case TypeUint8:
			return float64(b[i])
		case TypeInt8:
			return float64(int8(b[i]))
		case TypeInt16:
			return float64(int16(binary.LittleEndian.Uint16(b[2*i:])))
		case TypeInt32:
			return float64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		case TypeInt64:
			return float64(int64(binary.LittleEndian.Uint64(b[8*i:])))
		}
		return math.NaN()
	}
	switch t.Type {
	case TypeFloat32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case TypeUint8, TypeInt8, TypeInt16, TypeInt32, TypeInt64:
	default:
		return nil, fmt.Errorf("tflite: cannot convert tensor %s of type %v to float32", t.Name, t.Type)
	}
	q := t.Quant
	if q == nil {
		for i := range out {
			out[i] = float32(raw(i))
		}
		return out, nil
	}
	nch := len(q.Scale)
	if len(q.ZeroPoint) != 0 && len(q.ZeroPoint) != nch {
		return nil, fmt.Errorf("tflite: tensor %s has %d scales and %d zero points", t.Name, nch, len(q.ZeroPoint))
	}
	zp := func(c int) float64 {
		if len(q.ZeroPoint) == 0 {
			return 0
		}
		return float64(q.ZeroPoint[c])
	}
	if nch == 1 {
		s, z := float64(q.Scale[0]), zp(0)
		for i := range out {
			out[i] = float32((raw(i) - z) * s)
		}
		return out, nil
	}
	// Per-channel: index i's channel along QuantizedDimension.
	d := int(q.QuantizedDimension)
	if d < 0 || d >= len(t.Shape) || int(t.Shape[d]) != nch {
		return nil, fmt.Errorf("tflite: tensor %s shape %v has %d per-channel scales along dimension %d", t.Name, t.Shape, nch, d)
	}
	inner := 1
	for _, s := range t.Shape[d+1:] {
		inner *= int(s)
	}
	for i := range out {
		c := (i / inner) % nch
		out[i] = float32((raw(i) - zp(c)) * float64(q.Scale[c]))
	}
	return out, nil
}

// Int32s returns a constant INT32 or INT64 tensor's values (shapes, axes).
func (m *Model) Int32s(t *Tensor) ([]int32, error) {
	b, n, err := m.constData(t)
	if err != nil {
		return nil, err
	}
	out := make([]int32, n)
	switch t.Type {
	case TypeInt32:
		for i := range out {
			out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case TypeInt64:
		for i := range out {
			v := int64(binary.LittleEndian.Uint64(b[8*i:]))
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("tflite: tensor %s value %d out of int32 range", t.Name, v)
			}
			out[i] = int32(v)
		}
	default:
		return nil, fmt.Errorf("tflite: tensor %s has type %v, want INT32 or INT64", t.Name, t.Type)
	}
	return out, nil
}

// constData returns a constant tensor's bytes and element count, or an
// error when the tensor has no constant data.
func (m *Model) constData(t *Tensor) ([]byte, int, error) {
	b, err := m.Data(t)
	if err != nil {
		return nil, 0, err
	}
	if b == nil {
		return nil, 0, fmt.Errorf("tflite: tensor %s has no constant data", t.Name)
	}
	n, _ := t.NumElements()
	return b, n, nil
}
