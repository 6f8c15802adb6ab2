// Package tflite reads TensorFlow Lite model files (the "TFL3" flatbuffer
// schema) into plain Go structs, and dequantizes their constant tensors to
// float32.
//
// Only the parts of the schema needed to import convolutional classifiers
// are decoded: operator codes, subgraphs, tensors with their quantization,
// operators with the builtin options of common layers, and buffers. Every
// flatbuffer offset is checked against the file, so a truncated or corrupt
// file yields an error, never a panic.
package tflite

import (
	"errors"
	"fmt"
	"os"
)

// MaxFileSize bounds the size of a model file Read accepts (1 GiB).
const MaxFileSize = 1 << 30

// Model is a decoded TFLite model.
type Model struct {
	Version       uint32
	Description   string
	OperatorCodes []OperatorCode
	Subgraphs     []Subgraph
	// Buffers holds each buffer's bytes (slices of the file; nil if empty).
	Buffers [][]byte
}

// OperatorCode identifies the operator an Operator runs.
type OperatorCode struct {
	Builtin BuiltinOperator
	Custom  string
	Version int32
}

// Name returns the operator's schema name (the custom code for CUSTOM).
func (c OperatorCode) Name() string {
	if c.Builtin == OpCustom && c.Custom != "" {
		return "CUSTOM(" + c.Custom + ")"
	}
	return c.Builtin.String()
}

// Subgraph is one graph of a model; Subgraphs[0] is the main graph.
type Subgraph struct {
	Name      string
	Tensors   []Tensor
	Inputs    []int32
	Outputs   []int32
	Operators []Operator
}

// Tensor describes one tensor of a subgraph.
type Tensor struct {
	Name   string
	Shape  []int32
	Type   TensorType
	Buffer uint32
	// Quant is nil for float tensors.
	Quant *Quantization
}

// Quantization holds affine quantization parameters: real = scale·(q − zero_point),
// per tensor (one scale) or per channel along QuantizedDimension.
type Quantization struct {
	Min, Max           []float32
	Scale              []float32
	ZeroPoint          []int64
	QuantizedDimension int32
}

// Range returns the real-valued interval a tensor of type typ with this
// quantization can represent, ((qmin − zp)·s, (qmax − zp)·s), for
// per-tensor uint8, int8 and int16 quantization; ok is false otherwise.
func (q *Quantization) Range(typ TensorType) (lo, hi float32, ok bool) {
	if q == nil || len(q.Scale) != 1 {
		return 0, 0, false
	}
	var qmin, qmax int64
	switch typ {
	case TypeUint8:
		qmin, qmax = 0, 255
	case TypeInt8:
		qmin, qmax = -128, 127
	case TypeInt16:
		qmin, qmax = -32768, 32767
	default:
		return 0, 0, false
	}
	var zp int64
	if len(q.ZeroPoint) > 0 {
		zp = q.ZeroPoint[0]
	}
	s := q.Scale[0]
	return float32(qmin-zp) * s, float32(qmax-zp) * s, true
}

// Operator is one node of a subgraph.
type Operator struct {
	OpcodeIndex uint32
	Inputs      []int32 // tensor indices; -1 marks an omitted optional input
	Outputs     []int32
	// OptionsType is the BuiltinOptions union tag.
	OptionsType uint8
	// Options is one of the *Options types of this package, or nil when
	// the operator has none or they are of a kind this package doesn't decode.
	Options any
}

// TensorType is a tensor's element type.
type TensorType int8

// Tensor element types.
const (
	TypeFloat32 TensorType = 0
	TypeFloat16 TensorType = 1
	TypeInt32   TensorType = 2
	TypeUint8   TensorType = 3
	TypeInt64   TensorType = 4
	TypeString  TensorType = 5
	TypeBool    TensorType = 6
	TypeInt16   TensorType = 7
	TypeInt8    TensorType = 9
)

// String returns the type's schema name, e.g. "UINT8".
func (t TensorType) String() string {
	switch t {
	case TypeFloat32:
		return "FLOAT32"
	case TypeFloat16:
		return "FLOAT16"
	case TypeInt32:
		return "INT32"
	case TypeUint8:
		return "UINT8"
	case TypeInt64:
		return "INT64"
	case TypeString:
		return "STRING"
	case TypeBool:
		return "BOOL"
	case TypeInt16:
		return "INT16"
	case TypeInt8:
		return "INT8"
	}
	return fmt.Sprintf("TensorType(%d)", int8(t))
}

// ReadFile reads and parses a .tflite file.
func ReadFile(path string) (*Model, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("tflite: %w", err)
	}
	if st.Size() > MaxFileSize {
		return nil, fmt.Errorf("tflite: %s is %d bytes, limit %d", path, st.Size(), MaxFileSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tflite: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return m, nil
}

// Parse decodes a TFLite flatbuffer. The returned model's buffers alias b.
func Parse(b []byte) (m *Model, err error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("tflite: model is %d bytes, limit %d", len(b), MaxFileSize)
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("tflite: file too short (%d bytes) to be a TFLite model", len(b))
	}
	if string(b[4:8]) != "TFL3" {
		return nil, fmt.Errorf("tflite: not a TFLite model (file identifier %q, want \"TFL3\")", b[4:8])
	}
	// The reader checks every offset; this is a last line of defence.
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("tflite: malformed file: %v", r)
		}
	}()
	r := &reader{buf: b}
	root, err := r.tableAt(r.u32(0), "model")
	if err != nil {
		return nil, err
	}
	return parseModel(root)
}

func parseModel(t table) (*Model, error) {
	m := &Model{}
	var err error
	if m.Version, err = t.u32(0, 0); err != nil {
		return nil, err
	}
	codes, err := t.tables(1, "operator code")
	if err != nil {
		return nil, err
	}
	for _, c := range codes {
		oc, err := parseOpCode(c)
		if err != nil {
			return nil, err
		}
		m.OperatorCodes = append(m.OperatorCodes, oc)
	}
	sgs, err := t.tables(2, "subgraph")
	if err != nil {
		return nil, err
	}
	if m.Description, err = t.str(3); err != nil {
		return nil, err
	}
	bufs, err := t.tables(4, "buffer")
	if err != nil {
		return nil, err
	}
	for i, bt := range bufs {
		data, err := bt.bytes(0)
		if err != nil {
			return nil, err
		}
		if data == nil {
			// Large models keep buffer data after the flatbuffer (offset, size).
			off, err := bt.u64(1, 0)
			if err != nil {
				return nil, err
			}
			size, err := bt.u64(2, 0)
			if err != nil {
				return nil, err
			}
			if off > 1 && size > 0 {
				if err := t.r.need(off, size, fmt.Sprintf("buffer %d", i)); err != nil {
					return nil, err
				}
				data = t.r.buf[off : off+size : off+size]
			}
		}
		m.Buffers = append(m.Buffers, data)
	}
	for i, st := range sgs {
		sg, err := parseSubgraph(st, m)
		if err != nil {
			return nil, fmt.Errorf("%w (subgraph %d)", err, i)
		}
		m.Subgraphs = append(m.Subgraphs, sg)
	}
	if len(m.Subgraphs) == 0 {
		return nil, errors.New("tflite: model has no subgraph")
	}
	return m, nil
}

func parseOpCode(t table) (OperatorCode, error) {
	dep, err := t.i8(0, 0)
	if err != nil {
		return OperatorCode{}, err
	}
	custom, err := t.str(1)
	if err != nil {
		return OperatorCode{}, err
	}
	ver, err := t.i32(2, 1)
	if err != nil {
		return OperatorCode{}, err
	}
	code, err := t.i32(3, 0)
	if err != nil {
		return OperatorCode{}, err
	}
	// Files older than schema v3a only set the deprecated int8 code; newer
	// ones set both (the deprecated one saturated at 127).
	if int32(dep) > code {
		code = int32(dep)
	}
	return OperatorCode{Builtin: BuiltinOperator(code), Custom: custom, Version: ver}, nil
}

func parseSubgraph(t table, m *Model) (Subgraph, error) {
	var sg Subgraph
	tts, err := t.tables(0, "tensor")
	if err != nil {
		return sg, err
	}
	for i, tt := range tts {
		ten, err := parseTensor(tt)
		if err != nil {
			return sg, err
		}
		if int(ten.Buffer) >= len(m.Buffers) && ten.Buffer != 0 {
			return sg, fmt.Errorf("tflite: tensor %d (%s) refers to buffer %d of %d", i, ten.Name, ten.Buffer, len(m.Buffers))
		}
		sg.Tensors = append(sg.Tensors, ten)
	}
	if sg.Inputs, err = t.i32s(1); err != nil {
		return sg, err
	}
	if sg.Outputs, err = t.i32s(2); err != nil {
		return sg, err
	}
	ops, err := t.tables(3, "operator")
	if err != nil {
		return sg, err
	}
	for i, ot := range ops {
		op, err := parseOperator(ot)
		if err != nil {
			return sg, err
		}
		if int(op.OpcodeIndex) >= len(m.OperatorCodes) {
			return sg, fmt.Errorf("tflite: operator %d has opcode index %d of %d", i, op.OpcodeIndex, len(m.OperatorCodes))
		}
		for _, idx := range append(append([]int32(nil), op.Inputs...), op.Outputs...) {
			if idx < -1 || int(idx) >= len(sg.Tensors) {
				return sg, fmt.Errorf("tflite: operator %d (%s) refers to tensor %d of %d", i, m.OperatorCodes[op.OpcodeIndex].Name(), idx, len(sg.Tensors))
			}
		}
		sg.Operators = append(sg.Operators, op)
	}
	for _, idx := range append(append([]int32(nil), sg.Inputs...), sg.Outputs...) {
		if idx < 0 || int(idx) >= len(sg.Tensors) {
			return sg, fmt.Errorf("tflite: subgraph input/output refers to tensor %d of %d", idx, len(sg.Tensors))
		}
	}
	if sg.Name, err = t.str(4); err != nil {
		return sg, err
	}
	return sg, nil
}

func parseTensor(t table) (Tensor, error) {
	var ten Tensor
	var err error
	if ten.Shape, err = t.i32s(0); err != nil {
		return ten, err
	}
	typ, err := t.i8(1, 0)
	if err != nil {
		return ten, err
	}
	ten.Type = TensorType(typ)
	if ten.Buffer, err = t.u32(2, 0); err != nil {
		return ten, err
	}
	if ten.Name, err = t.str(3); err != nil {
		return ten, err
	}
	qt, ok, err := t.sub(4, "quantization of tensor "+ten.Name)
	if err != nil {
		return ten, err
	}
	if ok {
		q := &Quantization{}
		if q.Min, err = qt.f32s(0); err != nil {
			return ten, err
		}
		if q.Max, err = qt.f32s(1); err != nil {
			return ten, err
		}
		if q.Scale, err = qt.f32s(2); err != nil {
			return ten, err
		}
		if q.ZeroPoint, err = qt.i64s(3); err != nil {
			return ten, err
		}
		// Fields 4 and 5 are the details union (type, value).
		if q.QuantizedDimension, err = qt.i32(6, 0); err != nil {
			return ten, err
		}
		if len(q.Scale) > 0 {
			ten.Quant = q
		}
	}
	return ten, nil
}

func parseOperator(t table) (Operator, error) {
	var op Operator
	var err error
	if op.OpcodeIndex, err = t.u32(0, 0); err != nil {
		return op, err
	}
	if op.Inputs, err = t.i32s(1); err != nil {
		return op, err
	}
	if op.Outputs, err = t.i32s(2); err != nil {
		return op, err
	}
	if op.OptionsType, err = t.u8(3, 0); err != nil {
		return op, err
	}
	ot, ok, err := t.sub(4, "builtin options")
	if err != nil {
		return op, err
	}
	if ok {
		if op.Options, err = parseOptions(op.OptionsType, ot); err != nil {
			return op, err
		}
	}
	return op, nil
}
