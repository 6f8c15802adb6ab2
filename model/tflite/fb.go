package tflite

import (
	"fmt"

	flatbuffers "github.com/google/flatbuffers/go"
)

// reader walks a flatbuffer with every offset checked against the buffer,
// so that malformed files produce errors instead of out-of-range panics.
type reader struct {
	buf []byte
}

// table is a flatbuffer table: its position and its validated vtable.
type table struct {
	r      *reader
	pos    uint32
	vt     uint32
	vtSize uint16
	what   string // for error messages
}

func (r *reader) errf(format string, args ...any) error {
	return fmt.Errorf("tflite: malformed file: "+format, args...)
}

// need checks that n bytes are available at off.
func (r *reader) need(off uint64, n uint64, what string) error {
	if off > uint64(len(r.buf)) || n > uint64(len(r.buf))-off {
		return r.errf("%s at offset %d (+%d bytes) is past the end of the %d-byte buffer", what, off, n, len(r.buf))
	}
	return nil
}

func (r *reader) u32(off uint32) uint32 { return flatbuffers.GetUint32(r.buf[off:]) }

// tableAt validates the table starting at pos.
func (r *reader) tableAt(pos uint32, what string) (table, error) {
	if err := r.need(uint64(pos), 4, what); err != nil {
		return table{}, err
	}
	soff := int64(flatbuffers.GetInt32(r.buf[pos:]))
	vt := int64(pos) - soff
	if vt < 0 || vt > int64(len(r.buf)) {
		return table{}, r.errf("%s at offset %d has its vtable out of the buffer", what, pos)
	}
	if err := r.need(uint64(vt), 4, what+" vtable"); err != nil {
		return table{}, err
	}
	vtSize := flatbuffers.GetUint16(r.buf[vt:])
	objSize := flatbuffers.GetUint16(r.buf[vt+2:])
	if vtSize < 4 || vtSize%2 != 0 {
		return table{}, r.errf("%s vtable at offset %d has size %d", what, vt, vtSize)
	}
	if err := r.need(uint64(vt), uint64(vtSize), what+" vtable"); err != nil {
		return table{}, err
	}
	if err := r.need(uint64(pos), uint64(objSize), what); err != nil {
		return table{}, err
	}
	return table{r: r, pos: pos, vt: uint32(vt), vtSize: vtSize, what: what}, nil
}

// field returns the absolute offset of field id (0 when absent), having
// checked that size bytes are readable there.
func (t table) field(id int, size uint64) (uint32, error) {
	slot := uint32(4 + 2*id)
	if slot+2 > uint32(t.vtSize) {
		return 0, nil
	}
	rel := flatbuffers.GetUint16(t.r.buf[t.vt+slot:])
	if rel == 0 {
		return 0, nil
	}
	off := uint64(t.pos) + uint64(rel)
	if err := t.r.need(off, size, fmt.Sprintf("%s field %d", t.what, id)); err != nil {
		return 0, err
	}
	return uint32(off), nil
}

func (t table) u8(id int, def uint8) (uint8, error) {
	off, err := t.field(id, 1)
	if err != nil || off == 0 {
		return def, err
	}
	return t.r.buf[off], nil
}

func (t table) i8(id int, def int8) (int8, error) {
	v, err := t.u8(id, uint8(def))
	return int8(v), err
}

func (t table) i32(id int, def int32) (int32, error) {
	off, err := t.field(id, 4)
	if err != nil || off == 0 {
		return def, err
	}
	return flatbuffers.GetInt32(t.r.buf[off:]), nil
}

func (t table) u32(id int, def uint32) (uint32, error) {
	v, err := t.i32(id, int32(def))
	return uint32(v), err
}

func (t table) u64(id int, def uint64) (uint64, error) {
	off, err := t.field(id, 8)
	if err != nil || off == 0 {
		return def, err
	}
	return flatbuffers.GetUint64(t.r.buf[off:]), nil
}

func (t table) f32(id int, def float32) (float32, error) {
	off, err := t.field(id, 4)
	if err != nil || off == 0 {
		return def, err
	}
	return flatbuffers.GetFloat32(t.r.buf[off:]), nil
}

// ref follows the uoffset stored in field id; 0 when the field is absent.
func (t table) ref(id int) (uint32, error) {
	off, err := t.field(id, 4)
	if err != nil || off == 0 {
		return 0, err
	}
	target := uint64(off) + uint64(t.r.u32(off))
	if target >= uint64(len(t.r.buf)) {
		return 0, t.r.errf("%s field %d points to offset %d, past the %d-byte buffer", t.what, id, target, len(t.r.buf))
	}
	return uint32(target), nil
}

// vector returns the start and length of the vector in field id, checked
// for elem-byte elements.
func (t table) vector(id int, elem uint64) (start uint32, n int, err error) {
	v, err := t.ref(id)
	if err != nil || v == 0 {
		return 0, 0, err
	}
	if err := t.r.need(uint64(v), 4, t.what+" vector length"); err != nil {
		return 0, 0, err
	}
	l := uint64(t.r.u32(v))
	if err := t.r.need(uint64(v)+4, l*elem, fmt.Sprintf("%s field %d (%d elements)", t.what, id, l)); err != nil {
		return 0, 0, err
	}
	return v + 4, int(l), nil
}

func (t table) bytes(id int) ([]byte, error) {
	s, n, err := t.vector(id, 1)
	if err != nil || n == 0 {
		return nil, err
	}
	return t.r.buf[s : s+uint32(n) : s+uint32(n)], nil
}

func (t table) str(id int) (string, error) {
	b, err := t.bytes(id)
	return string(b), err
}

func (t table) i32s(id int) ([]int32, error) {
	s, n, err := t.vector(id, 4)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = flatbuffers.GetInt32(t.r.buf[s+uint32(4*i):])
	}
	return out, nil
}

func (t table) f32s(id int) ([]float32, error) {
	s, n, err := t.vector(id, 4)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = flatbuffers.GetFloat32(t.r.buf[s+uint32(4*i):])
	}
	return out, nil
}

func (t table) i64s(id int) ([]int64, error) {
	s, n, err := t.vector(id, 8)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		out[i] = flatbuffers.GetInt64(t.r.buf[s+uint32(8*i):])
	}
	return out, nil
}

// tables returns the tables of a vector-of-tables field.
func (t table) tables(id int, what string) ([]table, error) {
	s, n, err := t.vector(id, 4)
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]table, n)
	for i := range out {
		p := s + uint32(4*i)
		target := uint64(p) + uint64(t.r.u32(p))
		if target >= uint64(len(t.r.buf)) {
			return nil, t.r.errf("%s %d points past the buffer", what, i)
		}
		if out[i], err = t.r.tableAt(uint32(target), fmt.Sprintf("%s %d", what, i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sub returns the table referenced by field id; ok is false when absent.
func (t table) sub(id int, what string) (table, bool, error) {
	p, err := t.ref(id)
	if err != nil || p == 0 {
		return table{}, false, err
	}
	st, err := t.r.tableAt(p, what)
	return st, err == nil, err
}
