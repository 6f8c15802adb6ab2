package teacher

import (
	"fmt"
	"slices"

	"github.com/multiad/multiad/model/tflite"
)

// inferShapes returns a copy of sg in which every operator output that the
// file leaves without a shape (some converters, e.g. the one that wrote
// MobileNet EdgeTPU, record only the input's and the constants' shapes) has
// the shape its operator computes from its inputs, in TFLite (NHWC) layout.
// Shapes the file gives are kept as they are.
func inferShapes(m *tflite.Model, sg *tflite.Subgraph) (*tflite.Subgraph, error) {
	out := *sg
	out.Tensors = slices.Clone(sg.Tensors)
	for i := range sg.Operators {
		op := &sg.Operators[i]
		if len(op.Outputs) != 1 || op.Outputs[0] < 0 || len(out.Tensors[op.Outputs[0]].Shape) > 0 {
			continue
		}
		code := m.OperatorCodes[op.OpcodeIndex]
		s, err := opShape(m, &out, op, code.Builtin)
		if err != nil {
			return nil, fmt.Errorf("teacher: operator %d (%s -> %s): output shape: %w", i, code.Name(), out.Tensors[op.Outputs[0]].Name, err)
		}
		out.Tensors[op.Outputs[0]].Shape = s
	}
	return &out, nil
}

// convOut is the output size of a convolution or pool along one axis.
func convOut(in, k, s, d int32, pad tflite.Padding) int32 {
	if pad == tflite.PaddingSame {
		return (in + s - 1) / s
	}
	return (in-(k-1)*d-1)/s + 1
}

// opShape computes one operator's output shape (NHWC) from its inputs'.
func opShape(m *tflite.Model, sg *tflite.Subgraph, op *tflite.Operator, code tflite.BuiltinOperator) ([]int32, error) {
	in := func(k int) ([]int32, error) {
		if k >= len(op.Inputs) || op.Inputs[k] < 0 {
			return nil, fmt.Errorf("input %d missing", k)
		}
		s := sg.Tensors[op.Inputs[k]].Shape
		if len(s) == 0 && sg.Tensors[op.Inputs[k]].Buffer == 0 {
			return nil, fmt.Errorf("input %d (%s) has no known shape", k, sg.Tensors[op.Inputs[k]].Name)
		}
		return s, nil
	}
	x, err := in(0)
	if err != nil {
		return nil, err
	}
	switch code {
	case tflite.OpConv2D, tflite.OpDepthwiseConv:
		w, err := in(1)
		if err != nil {
			return nil, err
		}
		if len(x) != 4 || len(w) != 4 {
			return nil, fmt.Errorf("input %v and weights %v: want rank 4", x, w)
		}
		var pad tflite.Padding
		var sh, sw, dh, dw int32
		switch o := op.Options.(type) {
		case *tflite.Conv2DOptions:
			pad, sh, sw, dh, dw = o.Padding, o.StrideH, o.StrideW, o.DilationH, o.DilationW
		case *tflite.DepthwiseConv2DOptions:
			pad, sh, sw, dh, dw = o.Padding, o.StrideH, o.StrideW, o.DilationH, o.DilationW
		default:
			return nil, fmt.Errorf("missing convolution options")
		}
		if sh < 1 || sw < 1 || dh < 1 || dw < 1 {
			return nil, fmt.Errorf("strides (%d,%d) and dilations (%d,%d) must be positive", sh, sw, dh, dw)
		}
		oc := w[0]
		if code == tflite.OpDepthwiseConv {
			oc = w[3]
		}
		return []int32{x[0], convOut(x[1], w[1], sh, dh, pad), convOut(x[2], w[2], sw, dw, pad), oc}, nil
	case tflite.OpAveragePool2D, tflite.OpMaxPool2D:
		o, ok := op.Options.(*tflite.Pool2DOptions)
		if !ok || len(x) != 4 || o.StrideH < 1 || o.StrideW < 1 {
			return nil, fmt.Errorf("missing pool options or input %v not NHWC", x)
		}
		return []int32{x[0], convOut(x[1], o.FilterHeight, o.StrideH, 1, o.Padding), convOut(x[2], o.FilterWidth, o.StrideW, 1, o.Padding), x[3]}, nil
	case tflite.OpAdd, tflite.OpSub, tflite.OpMul, tflite.OpDiv:
		y, err := in(1)
		if err != nil {
			return nil, err
		}
		return broadcast(x, y)
	case tflite.OpRelu, tflite.OpRelu6, tflite.OpReluN1To1, tflite.OpQuantize, tflite.OpDequantize,
		tflite.OpHardSwish, tflite.OpLogistic, tflite.OpSoftmax:
		return slices.Clone(x), nil
	case tflite.OpSqueeze:
		var dims []int32
		if o, ok := op.Options.(*tflite.SqueezeOptions); ok {
			dims = o.SqueezeDims
		}
		var s []int32
		for a, d := range x {
			drop := len(dims) == 0 && d == 1
			for _, q := range dims {
				if q < 0 {
					q += int32(len(x))
				}
				if int(q) == a {
					if d != 1 {
						return nil, fmt.Errorf("squeeze of axis %d of size %d", a, d)
					}
					drop = true
				}
			}
			if !drop {
				s = append(s, d)
			}
		}
		return s, nil
	case tflite.OpReshape:
		var want []int32
		if len(op.Inputs) > 1 && op.Inputs[1] >= 0 {
			if want, err = m.Int32s(&sg.Tensors[op.Inputs[1]]); err != nil {
				return nil, err
			}
		} else if o, ok := op.Options.(*tflite.ReshapeOptions); ok {
			want = o.NewShape
		}
		if len(want) == 0 {
			return nil, fmt.Errorf("reshape without a target shape")
		}
		n := int32(1)
		for _, d := range x {
			n *= d
		}
		s, known, free := slices.Clone(want), int32(1), -1
		for a, d := range s {
			switch {
			case d == -1 && free < 0:
				free = a
			case d > 0:
				known *= d
			default:
				return nil, fmt.Errorf("reshape target %v", want)
			}
		}
		if free >= 0 {
			if known == 0 || n%known != 0 {
				return nil, fmt.Errorf("reshape of %v to %v", x, want)
			}
			s[free] = n / known
		} else if known != n {
			return nil, fmt.Errorf("reshape of %v to %v", x, want)
		}
		return s, nil
	case tflite.OpMean:
		axes, err := m.Int32s(&sg.Tensors[op.Inputs[1]])
		if err != nil {
			return nil, err
		}
		o, _ := op.Options.(*tflite.ReducerOptions)
		var s []int32
		for a, d := range x {
			red := false
			for _, q := range axes {
				if q < 0 {
					q += int32(len(x))
				}
				red = red || int(q) == a
			}
			switch {
			case !red:
				s = append(s, d)
			case o != nil && o.KeepDims:
				s = append(s, 1)
			}
		}
		return s, nil
	case tflite.OpFullyConnect:
		w, err := in(1)
		if err != nil {
			return nil, err
		}
		if len(w) != 2 || w[1] == 0 {
			return nil, fmt.Errorf("weights %v: want [out, in]", w)
		}
		n := int32(1)
		for _, d := range x {
			n *= d
		}
		return []int32{n / w[1], w[0]}, nil
	case tflite.OpConcatenation:
		o, ok := op.Options.(*tflite.ConcatenationOptions)
		if !ok {
			return nil, fmt.Errorf("missing concatenation options")
		}
		a := int(o.Axis)
		if a < 0 {
			a += len(x)
		}
		if a < 0 || a >= len(x) {
			return nil, fmt.Errorf("axis %d of a rank-%d input", o.Axis, len(x))
		}
		s := slices.Clone(x)
		for k := 1; k < len(op.Inputs); k++ {
			y, err := in(k)
			if err != nil {
				return nil, err
			}
			if len(y) != len(x) {
				return nil, fmt.Errorf("inputs %v and %v", x, y)
			}
			s[a] += y[a]
		}
		return s, nil
	}
	return nil, fmt.Errorf("cannot infer the output shape of %v", code)
}

// broadcast returns the NumPy broadcast of two shapes.
func broadcast(a, b []int32) ([]int32, error) {
	if len(a) < len(b) {
		a, b = b, a
	}
	s := slices.Clone(a)
	off := len(a) - len(b)
	for i, d := range b {
		switch {
		case s[off+i] == d || d == 1:
		case s[off+i] == 1:
			s[off+i] = d
		default:
			return nil, fmt.Errorf("shapes %v and %v do not broadcast", a, b)
		}
	}
	return s, nil
}
