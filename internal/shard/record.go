package shard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// AppendString appends s with its length as a uvarint (Decoder.String).
func AppendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// AppendFloat64 appends v's IEEE 754 bits, little-endian (Decoder.Float64).
func AppendFloat64(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

// AppendBool appends v as one byte, 0 or 1 (Decoder.Bool).
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// errShort is a record that ends before its fields do.
var errShort = errors.New("record too short")

// Decoder reads the fields of one record in the order they were appended
// (encoding/binary's uvarints and varints, and the Append functions
// above). The first error sticks: fields after it read as zero, and End
// returns it.
type Decoder struct {
	B   []byte
	err error
}

// Fail records err (the first error sticks).
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
		d.B = nil
	}
}

// Uvarint reads a uvarint.
func (d *Decoder) Uvarint() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail(errShort)
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a varint.
func (d *Decoder) Varint() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail(errShort)
		return 0
	}
	d.B = d.B[n:]
	return v
}

// String reads an AppendString string.
func (d *Decoder) String() string {
	n := d.Uvarint()
	if n > uint64(len(d.B)) {
		d.Fail(errShort)
		return ""
	}
	s := string(d.B[:n])
	d.B = d.B[n:]
	return s
}

// Float64 reads an AppendFloat64 value.
func (d *Decoder) Float64() float64 {
	if len(d.B) < 8 {
		d.Fail(errShort)
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.B))
	d.B = d.B[8:]
	return v
}

// Byte reads one byte.
func (d *Decoder) Byte() byte {
	if len(d.B) < 1 {
		d.Fail(errShort)
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// Bool reads an AppendBool value.
func (d *Decoder) Bool() bool {
	switch d.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.Fail(errors.New("bool byte not 0 or 1"))
	return false
}

// End returns the first error, or an error when bytes are left over.
func (d *Decoder) End() error {
	if d.err == nil && len(d.B) > 0 {
		d.err = fmt.Errorf("%d bytes after the record", len(d.B))
	}
	return d.err
}
