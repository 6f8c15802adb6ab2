// Package onnxb builds ONNX graphs in Go on the protobuf types of
// github.com/advancedclimatesystems/gonnx/onnx (IR version 8, default
// domain opset 17), and merges built graphs into one another.
//
// A Builder collects inputs, constant initializers, nodes and outputs.
// Methods that create values return the value's name, so graphs read like
// straight-line code:
//
//	b := onnxb.New()
//	x := b.Input("image", onnx.TensorProto_FLOAT, "N", 3, "H", "W")
//	w := b.Const("w", []int64{8, 3, 3, 3}, weights)
//	y := b.Op("Conv", []string{x, w}, onnxb.Attrs{"pads": []int64{1, 1, 1, 1}})
//	b.Output(b.Identity(y, "features"), onnx.TensorProto_FLOAT, "N", 8, "H", "W")
//	model, err := b.Marshal()
//
// Errors (a bad attribute value, a duplicate name) are sticky: the first one
// is returned by Model and Marshal, which also check that every node input
// is defined before use.
package onnxb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// IRVersion is the ONNX IR version of the models a Builder writes.
const IRVersion = 8

// DefaultOpset is the default-domain opset New uses. ONNX Runtime 1.24 runs
// opsets up to 23; 17 has HardSwish, LayerNormalization and ReduceMean with
// axes as an attribute.
const DefaultOpset = 17

// MaxModelSize bounds the serialized models Load accepts (2 GiB, the
// protobuf limit).
const MaxModelSize = math.MaxInt32

// Attrs are a node's attributes. Values may be int, int64, float32, float64,
// string, []int, []int64, []float32, []float64, []string, *onnx.TensorProto
// or *onnx.GraphProto.
type Attrs map[string]any

// Builder accumulates one ONNX graph.
type Builder struct {
	graph   *onnx.GraphProto
	opset   int64
	ir      int64                      // IR version (IRVersion, or a loaded model's if higher)
	extra   []*onnx.OperatorSetIdProto // non-default domains of a loaded model
	values  map[string]bool            // every value name defined so far
	nodes   map[string]bool            // node names
	counter int
	err     error
}

// New returns an empty builder for the default opset.
func New() *Builder { return NewOpset(DefaultOpset) }

// NewOpset returns an empty builder for the given default-domain opset.
func NewOpset(opset int64) *Builder {
	return &Builder{
		graph:  &onnx.GraphProto{Name: "multiad"},
		opset:  opset,
		ir:     IRVersion,
		values: map[string]bool{},
		nodes:  map[string]bool{},
	}
}

// Opset returns the builder's default-domain opset version.
func (b *Builder) Opset() int64 { return b.opset }

// Err returns the first error recorded while building, if any.
func (b *Builder) Err() error { return b.err }

// SetName sets the graph's name.
func (b *Builder) SetName(name string) { b.graph.Name = name }

// Graph returns the graph built so far (shared, not copied).
func (b *Builder) Graph() *onnx.GraphProto { return b.graph }

func (b *Builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("onnxb: "+format, args...)
	}
}

// Has reports whether a value of that name exists in the graph.
func (b *Builder) Has(name string) bool { return b.values[name] }

// Unique returns a value name based on hint that is not yet used.
func (b *Builder) Unique(hint string) string {
	if hint == "" {
		hint = "v"
	}
	if !b.values[hint] {
		return hint
	}
	for {
		b.counter++
		n := fmt.Sprintf("%s_%d", hint, b.counter)
		if !b.values[n] {
			return n
		}
	}
}

func (b *Builder) define(name string) {
	if name == "" {
		b.fail("empty value name")
		return
	}
	if b.values[name] {
		b.fail("value %q defined twice", name)
		return
	}
	b.values[name] = true
}

// Input adds a graph input. dims are ints (fixed sizes) or strings (named
// dynamic dimensions such as "N"). It returns name.
func (b *Builder) Input(name string, elem onnx.TensorProto_DataType, dims ...any) string {
	b.define(name)
	b.graph.Input = append(b.graph.Input, b.valueInfo(name, elem, dims))
	return name
}

// Output marks an existing value as a graph output of the given type and
// dims (as for Input; no dims leaves the shape unspecified).
func (b *Builder) Output(name string, elem onnx.TensorProto_DataType, dims ...any) {
	if !b.values[name] {
		b.fail("output %q is not a value of the graph", name)
		return
	}
	for _, o := range b.graph.Output {
		if o.Name == name {
			b.fail("output %q declared twice", name)
			return
		}
	}
	b.graph.Output = append(b.graph.Output, b.valueInfo(name, elem, dims))
}

// Outputs returns the names of the graph outputs.
func (b *Builder) Outputs() []string {
	var out []string
	for _, o := range b.graph.Output {
		out = append(out, o.Name)
	}
	return out
}

// Inputs returns the names of the graph inputs that are not initializers.
func (b *Builder) Inputs() []string {
	inits := map[string]bool{}
	for _, t := range b.graph.Initializer {
		inits[t.Name] = true
	}
	var out []string
	for _, i := range b.graph.Input {
		if !inits[i.Name] {
			out = append(out, i.Name)
		}
	}
	return out
}

// ClearOutputs removes every graph output declaration (the values stay).
func (b *Builder) ClearOutputs() { b.graph.Output = nil }

func (b *Builder) valueInfo(name string, elem onnx.TensorProto_DataType, dims []any) *onnx.ValueInfoProto {
	tt := &onnx.TypeProto_Tensor{ElemType: int32(elem)}
	if dims != nil {
		shape := &onnx.TensorShapeProto{}
		for _, d := range dims {
			dim := &onnx.TensorShapeProto_Dimension{}
			switch v := d.(type) {
			case int:
				dim.Value = &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}
			case int64:
				dim.Value = &onnx.TensorShapeProto_Dimension_DimValue{DimValue: v}
			case string:
				dim.Value = &onnx.TensorShapeProto_Dimension_DimParam{DimParam: v}
			default:
				b.fail("value %q: dimension %v of type %T (want int, int64 or string)", name, d, d)
			}
			shape.Dim = append(shape.Dim, dim)
		}
		tt.Shape = shape
	}
	return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: tt}}}
}

func numel(shape []int64) (int64, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 || (d > 0 && n > math.MaxInt64/d) {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// Const adds a float32 initializer named name (made unique if taken) and
// returns its name.
func (b *Builder) Const(name string, shape []int64, data []float32) string {
	if n, ok := numel(shape); !ok || n != int64(len(data)) {
		b.fail("constant %q: shape %v does not hold %d values", name, shape, len(data))
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return b.Initializer(&onnx.TensorProto{Name: b.Unique(name), Dims: append([]int64(nil), shape...),
		DataType: int32(onnx.TensorProto_FLOAT), RawData: raw})
}

// Scalar adds a float32 scalar (rank 0) initializer and returns its name.
func (b *Builder) Scalar(name string, v float32) string {
	return b.Const(name, []int64{}, []float32{v})
}

// ConstInt64 adds an int64 initializer (shapes, axes, indices) and returns its name.
func (b *Builder) ConstInt64(name string, shape []int64, data []int64) string {
	if n, ok := numel(shape); !ok || n != int64(len(data)) {
		b.fail("constant %q: shape %v does not hold %d values", name, shape, len(data))
	}
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return b.Initializer(&onnx.TensorProto{Name: b.Unique(name), Dims: append([]int64(nil), shape...),
		DataType: int32(onnx.TensorProto_INT64), RawData: raw})
}

// ConstRaw adds an initializer of any element type from its little-endian
// bytes (e.g. uint8 zero points) and returns its name.
func (b *Builder) ConstRaw(name string, elem onnx.TensorProto_DataType, shape []int64, raw []byte) string {
	return b.Initializer(&onnx.TensorProto{Name: b.Unique(name), Dims: append([]int64(nil), shape...),
		DataType: int32(elem), RawData: append([]byte(nil), raw...)})
}

// Initializer adds a prepared initializer tensor under its own name.
func (b *Builder) Initializer(t *onnx.TensorProto) string {
	b.define(t.Name)
	b.graph.Initializer = append(b.graph.Initializer, t)
	return t.Name
}

// Op adds a node with one output, named after the operator, and returns the
// output's name.
func (b *Builder) Op(opType string, inputs []string, attrs Attrs) string {
	out := b.Unique(strings.ToLower(opType))
	b.Node(opType, inputs, []string{out}, attrs)
	return out
}

// OpN adds a node with n outputs and returns their names.
func (b *Builder) OpN(opType string, inputs []string, n int, attrs Attrs) []string {
	outs := make([]string, n)
	for i := range outs {
		outs[i] = b.Unique(fmt.Sprintf("%s_out%d", strings.ToLower(opType), i))
		b.values[outs[i]] = true // reserve, so the next Unique differs
	}
	for _, o := range outs {
		delete(b.values, o)
	}
	b.Node(opType, inputs, outs, attrs)
	return outs
}

// Node adds a node with explicitly named outputs (which must be new names).
// An empty input name marks an omitted optional input.
func (b *Builder) Node(opType string, inputs, outputs []string, attrs Attrs) {
	b.NodeDomain("", opType, inputs, outputs, attrs)
}

// NodeDomain is Node for an operator of another domain (e.g. "com.microsoft").
func (b *Builder) NodeDomain(domain, opType string, inputs, outputs []string, attrs Attrs) {
	for _, in := range inputs {
		if in != "" && !b.values[in] {
			b.fail("%s node: input %q is not defined", opType, in)
		}
	}
	for _, o := range outputs {
		b.define(o)
	}
	name := opType + "_" + outputs[0]
	for b.nodes[name] {
		b.counter++
		name = fmt.Sprintf("%s_%s_%d", opType, outputs[0], b.counter)
	}
	b.nodes[name] = true
	n := &onnx.NodeProto{Name: name, OpType: opType, Domain: domain,
		Input: append([]string(nil), inputs...), Output: append([]string(nil), outputs...)}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		a, err := Attribute(k, attrs[k])
		if err != nil {
			b.fail("%s node %q: %v", opType, name, err)
			continue
		}
		n.Attribute = append(n.Attribute, a)
	}
	b.graph.Node = append(b.graph.Node, n)
}

// Identity adds an Identity node whose output is named name and returns name.
func (b *Builder) Identity(x, name string) string {
	b.Node("Identity", []string{x}, []string{name}, nil)
	return name
}

// Attribute converts a Go value to an ONNX attribute (see Attrs).
func Attribute(name string, v any) (*onnx.AttributeProto, error) {
	a := &onnx.AttributeProto{Name: name}
	switch x := v.(type) {
	case int:
		a.Type, a.I = onnx.AttributeProto_INT, int64(x)
	case int64:
		a.Type, a.I = onnx.AttributeProto_INT, x
	case float32:
		a.Type, a.F = onnx.AttributeProto_FLOAT, x
	case float64:
		a.Type, a.F = onnx.AttributeProto_FLOAT, float32(x)
	case string:
		a.Type, a.S = onnx.AttributeProto_STRING, []byte(x)
	case []int:
		a.Type = onnx.AttributeProto_INTS
		for _, i := range x {
			a.Ints = append(a.Ints, int64(i))
		}
	case []int64:
		a.Type, a.Ints = onnx.AttributeProto_INTS, append([]int64(nil), x...)
	case []float32:
		a.Type, a.Floats = onnx.AttributeProto_FLOATS, append([]float32(nil), x...)
	case []float64:
		a.Type = onnx.AttributeProto_FLOATS
		for _, f := range x {
			a.Floats = append(a.Floats, float32(f))
		}
	case []string:
		a.Type = onnx.AttributeProto_STRINGS
		for _, s := range x {
			a.Strings = append(a.Strings, []byte(s))
		}
	case *onnx.TensorProto:
		a.Type, a.T = onnx.AttributeProto_TENSOR, x
	case *onnx.GraphProto:
		a.Type, a.G = onnx.AttributeProto_GRAPH, x
	default:
		return nil, fmt.Errorf("attribute %q has unsupported type %T", name, v)
	}
	return a, nil
}

// Model checks the graph (every node input defined earlier, at least one
// output) and wraps it in a model.
func (b *Builder) Model() (*onnx.ModelProto, error) {
	if b.err != nil {
		return nil, b.err
	}
	if err := check(b.graph, true); err != nil {
		return nil, err
	}
	opsets := []*onnx.OperatorSetIdProto{{Domain: "", Version: b.opset}}
	opsets = append(opsets, b.extra...)
	return &onnx.ModelProto{
		IrVersion:    b.ir,
		OpsetImport:  opsets,
		ProducerName: "multiad",
		Graph:        b.graph,
	}, nil
}

// Marshal serializes the model.
func (b *Builder) Marshal() ([]byte, error) {
	m, err := b.Model()
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("onnxb: marshal: %w", err)
	}
	return data, nil
}

// check verifies that nodes are in topological order and that the outputs
// exist (and, if needOutput, that there is one).
func check(g *onnx.GraphProto, needOutput bool) error {
	defined := map[string]bool{}
	for _, i := range g.Input {
		defined[i.Name] = true
	}
	for _, t := range g.Initializer {
		defined[t.Name] = true
	}
	for _, n := range g.Node {
		for _, in := range n.Input {
			if in != "" && !defined[in] {
				return fmt.Errorf("onnxb: node %q (%s) uses %q before it is defined", n.Name, n.OpType, in)
			}
		}
		for _, o := range n.Output {
			if defined[o] {
				return fmt.Errorf("onnxb: node %q (%s) redefines %q", n.Name, n.OpType, o)
			}
			defined[o] = true
		}
	}
	if needOutput && len(g.Output) == 0 {
		return errors.New("onnxb: graph has no output")
	}
	for _, o := range g.Output {
		if !defined[o.Name] {
			return fmt.Errorf("onnxb: graph output %q is never computed", o.Name)
		}
	}
	return nil
}
