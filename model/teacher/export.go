package teacher

import (
	"fmt"
	"math"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/onnxb"
)

// Build appends the program to b as ONNX nodes. image names an existing
// value of shape [N, C, H, W] holding the image in [0, 1] (RGB); the
// program's input normalisation (u8 = 255·x, real = scale·(u8 − zero
// point)) is done in the graph. Value and constant names are the TFLite
// tensor names with prefix prepended. It returns the map from program
// value names to the names in b.
//
// Padding is fixed from the model's native input size; TFLite SAME padding
// gives the same pads at any input size divisible by the model's total
// stride (32 for MobileNet), which callers must ensure.
func (p *Program) Build(b *onnxb.Builder, image, prefix string) (map[string]string, error) {
	return p.build(b, image, prefix, false)
}

// build is Build; with fakeQuant every op output with quantization
// parameters is rounded to its quantization grid (QuantizeLinear then
// DequantizeLinear), simulating the quantized TFLite model's activations.
func (p *Program) build(b *onnxb.Builder, image, prefix string, fakeQuant bool) (map[string]string, error) {
	names := map[string]string{}
	// u8 = 255·x; real = scale·(u8 − zp) = (255·scale)·x − zp·scale.
	xs := b.Op("Mul", []string{image, b.Scalar(prefix+"input_gain", 255*p.InputScale)}, nil)
	names[p.Input] = prefix + p.Input
	b.Node("Add", []string{xs, b.Scalar(prefix+"input_offset", -p.InputZeroPoint*p.InputScale)}, []string{names[p.Input]}, nil)
	rank := map[string]int{p.Input: 4}
	consts := map[string]string{}
	operand := func(v string) (string, int, error) {
		if n, ok := names[v]; ok {
			return n, rank[v], nil
		}
		c, ok := p.Consts[v]
		if !ok {
			return "", 0, fmt.Errorf("teacher: value %s is used before it is computed", v)
		}
		if n, ok := consts[v]; ok {
			return n, len(c.Shape), nil
		}
		n := b.Const(prefix+v, c.Shape, c.Data)
		consts[v] = n
		return n, len(c.Shape), nil
	}
	for i := range p.Ops {
		op := &p.Ops[i]
		out := prefix + op.Output
		ins := make([]string, len(op.Inputs))
		inRank := 0
		for k, v := range op.Inputs {
			n, r, err := operand(v)
			if err != nil {
				return nil, err
			}
			ins[k] = n
			if k == 0 {
				inRank = r
			}
		}
		outRank := len(op.OutShape)
		// final emits the op's last node: named out unless a Clip follows.
		final := func(opType string, inputs []string, attrs onnxb.Attrs) {
			if fakeQuant && op.Quant != nil {
				y := b.Op(opType, inputs, attrs)
				sc := b.Scalar(out+"/q_scale", op.Quant.Scale)
				var zp string
				if op.Quant.Signed {
					zp = b.ConstRaw(out+"/q_zero_point", onnx.TensorProto_INT8, []int64{}, []byte{byte(int8(op.Quant.ZeroPoint))})
				} else {
					zp = b.ConstRaw(out+"/q_zero_point", onnx.TensorProto_UINT8, []int64{}, []byte{byte(op.Quant.ZeroPoint)})
				}
				q := b.Op("QuantizeLinear", []string{y, sc, zp}, nil)
				b.Node("DequantizeLinear", []string{q, sc, zp}, []string{out}, nil)
				return
			}
			if op.Clamp {
				y := b.Op(opType, inputs, attrs)
				lo := b.Scalar(out+"/clip_min", op.Lo)
				hi := ""
				if !math.IsInf(float64(op.Hi), 1) {
					hi = b.Scalar(out+"/clip_max", op.Hi)
				}
				b.Node("Clip", []string{y, lo, hi}, []string{out}, nil)
				return
			}
			b.Node(opType, inputs, []string{out}, attrs)
		}
		switch op.Kind {
		case KindConv:
			w := b.Const(out+"/weights", op.WeightShape, op.Weight)
			inputs := []string{ins[0], w}
			if op.Bias != nil {
				inputs = append(inputs, b.Const(out+"/bias", []int64{int64(len(op.Bias))}, op.Bias))
			}
			final("Conv", inputs, onnxb.Attrs{
				"kernel_shape": []int{op.Kernel[0], op.Kernel[1]},
				"strides":      []int{op.Strides[0], op.Strides[1]},
				"dilations":    []int{op.Dilations[0], op.Dilations[1]},
				"pads":         []int{op.Pads[0], op.Pads[1], op.Pads[2], op.Pads[3]},
				"group":        op.Group,
			})
		case KindAdd, KindSub, KindMul, KindDiv:
			final(string(op.Kind), ins, nil)
		case KindGlobalAvgPool:
			final("GlobalAveragePool", ins, nil)
		case KindAvgPool, KindMaxPool:
			attrs := onnxb.Attrs{
				"kernel_shape": []int{op.Kernel[0], op.Kernel[1]},
				"strides":      []int{op.Strides[0], op.Strides[1]},
				"pads":         []int{op.Pads[0], op.Pads[1], op.Pads[2], op.Pads[3]},
			}
			if op.Kind == KindAvgPool {
				attrs["count_include_pad"] = 0 // TFLite averages over valid pixels only
			}
			final(string(op.Kind), ins, attrs)
		case KindMean:
			keep := 0
			if op.KeepDims {
				keep = 1
			}
			final("ReduceMean", ins, onnxb.Attrs{"axes": op.Axes, "keepdims": keep})
		case KindReshape:
			x := ins[0]
			if inRank == 4 {
				x = b.Op("Transpose", []string{x}, onnxb.Attrs{"perm": []int{0, 2, 3, 1}})
			}
			shape := append([]int64{0}, op.Shape[1:]...) // 0: keep the batch size
			shapeC := b.ConstInt64(out+"/shape", []int64{int64(len(shape))}, shape)
			if outRank == 4 {
				y := b.Op("Reshape", []string{x, shapeC}, nil)
				final("Transpose", []string{y}, onnxb.Attrs{"perm": []int{0, 3, 1, 2}})
			} else {
				final("Reshape", []string{x, shapeC}, nil)
			}
		case KindSoftmax:
			x := ins[0]
			if op.Beta != 1 {
				x = b.Op("Mul", []string{x, b.Scalar(out+"/beta", op.Beta)}, nil)
			}
			final("Softmax", []string{x}, onnxb.Attrs{"axis": -1})
		case KindFC:
			x := ins[0]
			if inRank == 4 {
				x = b.Op("Transpose", []string{x}, onnxb.Attrs{"perm": []int{0, 2, 3, 1}})
			}
			if inRank != 2 {
				x = b.Op("Flatten", []string{x}, onnxb.Attrs{"axis": 1})
			}
			inputs := []string{x, b.Const(out+"/weights", op.WeightShape, op.Weight)}
			if op.Bias != nil {
				inputs = append(inputs, b.Const(out+"/bias", []int64{int64(len(op.Bias))}, op.Bias))
			}
			final("Gemm", inputs, onnxb.Attrs{"transB": 1})
		case KindHardSwish:
			final("HardSwish", ins, nil)
		case KindSigmoid:
			final("Sigmoid", ins, nil)
		case KindIdentity:
			final("Identity", ins, nil)
		case KindConcat:
			final("Concat", ins, onnxb.Attrs{"axis": op.Axes[0]})
		default:
			return nil, fmt.Errorf("teacher: op %s of kind %s cannot be exported", op.Output, op.Kind)
		}
		names[op.Output] = out
		rank[op.Output] = outRank
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	return names, nil
}

// buildProgramGraph writes the complete teacher graph of a program.
func buildProgramGraph(p *Program, feats [3]string, chans [3]int, fakeQuant bool) (*onnxb.Builder, error) {
	b := onnxb.New()
	b.SetName("multiad_teacher")
	img := b.Input(InputImage, onnx.TensorProto_FLOAT, "N", p.InputChannels, "H", "W")
	names, err := p.build(b, img, "", fakeQuant)
	if err != nil {
		return nil, err
	}
	logits := b.Identity(names[p.Logits], OutputLogits)
	shape, _ := p.Shape(p.Logits)
	if len(shape) == 2 {
		b.Output(logits, onnx.TensorProto_FLOAT, "N", shape[1])
	} else {
		b.Output(logits, onnx.TensorProto_FLOAT)
	}
	for k, f := range feats {
		n, ok := names[f]
		if !ok {
			return nil, fmt.Errorf("teacher: feature %s is not a value of the program", f)
		}
		s := FeatureStrides[k]
		b.Output(b.Identity(n, FeatureOutputs[k]), onnx.TensorProto_FLOAT, "N", chans[k], fmt.Sprintf("H/%d", s), fmt.Sprintf("W/%d", s))
	}
	return b, b.Err()
}
