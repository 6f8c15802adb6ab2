package onnxb

import (
	"fmt"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"
)

// Load parses a serialized ONNX model into a Builder, so that it can be
// extended or embedded into another graph.
func Load(data []byte) (*Builder, error) {
	if len(data) > MaxModelSize {
		return nil, fmt.Errorf("onnxb: model is %d bytes, limit %d", len(data), MaxModelSize)
	}
	m := &onnx.ModelProto{}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("onnxb: not an ONNX model: %w", err)
	}
	return FromModel(m)
}

// FromModel wraps a model's graph (shared, not copied) in a Builder.
func FromModel(m *onnx.ModelProto) (*Builder, error) {
	if m.Graph == nil {
		return nil, fmt.Errorf("onnxb: model has no graph")
	}
	b := NewOpset(0)
	for _, o := range m.OpsetImport {
		if o.Domain == "" || o.Domain == "ai.onnx" {
			b.opset = o.Version
		} else {
			b.extra = append(b.extra, o)
		}
	}
	if b.opset == 0 {
		return nil, fmt.Errorf("onnxb: model imports no default-domain opset")
	}
	b.graph = m.Graph
	b.ir = max(b.ir, m.IrVersion)
	for _, i := range m.Graph.Input {
		b.values[i.Name] = true
	}
	for _, t := range m.Graph.Initializer {
		b.values[t.Name] = true
	}
	for _, n := range m.Graph.Node {
		for _, o := range n.Output {
			b.values[o] = true
		}
		b.nodes[n.Name] = true
	}
	if err := check(m.Graph, false); err != nil {
		return nil, err
	}
	return b, nil
}

// RenameValue renames a value everywhere in the graph (inputs, initializers,
// node inputs and outputs, graph outputs, value infos).
func (b *Builder) RenameValue(from, to string) error {
	if !b.values[from] {
		return fmt.Errorf("onnxb: rename: no value %q", from)
	}
	if from == to {
		return nil
	}
	if b.values[to] {
		return fmt.Errorf("onnxb: rename %q: %q is already used", from, to)
	}
	g := b.graph
	for _, vi := range append(append(append([]*onnx.ValueInfoProto(nil), g.Input...), g.Output...), g.ValueInfo...) {
		if vi.Name == from {
			vi.Name = to
		}
	}
	for _, t := range g.Initializer {
		if t.Name == from {
			t.Name = to
		}
	}
	for _, n := range g.Node {
		for i := range n.Input {
			if n.Input[i] == from {
				n.Input[i] = to
			}
		}
		for i := range n.Output {
			if n.Output[i] == from {
				n.Output[i] = to
			}
		}
	}
	delete(b.values, from)
	b.values[to] = true
	return nil
}

// Embed copies sub's initializers and nodes into b, prefixing every value
// and node name with prefix. inputs binds each of sub's graph inputs (by
// name) to an existing value of b; every input must be bound. It returns,
// for each of sub's graph outputs, the name of the corresponding value in b.
// Both graphs must use the same default-domain opset. Nodes with subgraph
// attributes (If, Loop) that refer to outer values are not rewritten.
func (b *Builder) Embed(sub *Builder, prefix string, inputs map[string]string) (map[string]string, error) {
	if b.err != nil {
		return nil, b.err
	}
	if sub.err != nil {
		return nil, sub.err
	}
	if sub.opset != b.opset {
		return nil, fmt.Errorf("onnxb: embed: graph has opset %d, the host %d", sub.opset, b.opset)
	}
	rename := map[string]string{"": ""}
	for _, in := range sub.Inputs() {
		v, ok := inputs[in]
		if !ok {
			return nil, fmt.Errorf("onnxb: embed: input %q of the embedded graph is not bound", in)
		}
		if !b.values[v] {
			return nil, fmt.Errorf("onnxb: embed: input %q bound to %q, which the host graph lacks", in, v)
		}
		rename[in] = v
	}
	for in := range inputs {
		if _, ok := rename[in]; !ok {
			return nil, fmt.Errorf("onnxb: embed: the embedded graph has no input %q", in)
		}
	}
	fresh := func(name string) (string, error) {
		if v, ok := rename[name]; ok {
			return v, nil
		}
		n := prefix + name
		if b.values[n] {
			return "", fmt.Errorf("onnxb: embed: %q already exists in the host graph (choose another prefix)", n)
		}
		rename[name] = n
		return n, nil
	}
	for _, t := range sub.graph.Initializer {
		n, err := fresh(t.Name)
		if err != nil {
			return nil, err
		}
		c := proto.Clone(t).(*onnx.TensorProto)
		c.Name = n
		b.Initializer(c)
	}
	for _, nd := range sub.graph.Node {
		c := proto.Clone(nd).(*onnx.NodeProto)
		for i, in := range c.Input {
			v, ok := rename[in]
			if !ok {
				return nil, fmt.Errorf("onnxb: embed: node %q uses undefined %q", nd.Name, in)
			}
			c.Input[i] = v
		}
		for i, o := range c.Output {
			v, err := fresh(o)
			if err != nil {
				return nil, err
			}
			c.Output[i] = v
			b.values[v] = true
		}
		c.Name = prefix + c.Name
		for b.nodes[c.Name] {
			b.counter++
			c.Name = fmt.Sprintf("%s%s_%d", prefix, nd.Name, b.counter)
		}
		b.nodes[c.Name] = true
		b.graph.Node = append(b.graph.Node, c)
	}
	b.ir = max(b.ir, sub.ir)
	for _, e := range sub.extra {
		found := false
		for _, x := range b.extra {
			found = found || x.Domain == e.Domain
		}
		if !found {
			b.extra = append(b.extra, e)
		}
	}
	out := map[string]string{}
	for _, o := range sub.graph.Output {
		out[o.Name] = rename[o.Name]
	}
	return out, nil
}
