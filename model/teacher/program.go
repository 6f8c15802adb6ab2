package teacher

import (
	"fmt"
	"math"

	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/tflite"
)

// Kind is the kind of a float Program operation.
type Kind string

// Operation kinds of a Program. All 4-D activations are NCHW.
const (
	KindConv          Kind = "Conv"        // 2-D convolution (Group > 1: grouped/depthwise)
	KindAdd           Kind = "Add"         // elementwise, with broadcasting
	KindSub           Kind = "Sub"         // elementwise, with broadcasting
	KindMul           Kind = "Mul"         // elementwise, with broadcasting
	KindDiv           Kind = "Div"         // elementwise, with broadcasting
	KindAvgPool       Kind = "AveragePool" // padding excluded from the count
	KindMaxPool       Kind = "MaxPool"     //
	KindGlobalAvgPool Kind = "GlobalAveragePool"
	KindMean          Kind = "ReduceMean" // over Axes (NCHW), KeepDims
	KindReshape       Kind = "Reshape"    // TFLite (NHWC order) reshape to Shape; Shape[0] is the batch
	KindSoftmax       Kind = "Softmax"    // over the last axis, of Beta·x
	KindFC            Kind = "FullyConnected"
	KindHardSwish     Kind = "HardSwish" // x·relu6(x+3)/6
	KindSigmoid       Kind = "Sigmoid"   //
	KindIdentity      Kind = "Identity"  // (QUANTIZE, DEQUANTIZE, RELU* whose effect is the clamp)
	KindConcat        Kind = "Concat"    // along Axis (NCHW)
)

// Op is one float operation. Its output is clamped to [Lo, Hi] when Clamp
// is set: the range the quantized model's output tensor can represent (for
// MobileNet this is the only place ReLU6 appears).
type Op struct {
	Kind   Kind
	Inputs []string // value names: the program input, earlier outputs or Consts
	Output string   // the TFLite tensor name

	// Conv and FullyConnected: weights in ONNX layout (Conv [O, I/Group, KH, KW],
	// FC [Out, In]) and a bias per output channel (may be nil).
	Weight      []float32
	WeightShape []int64
	Bias        []float32
	Group       int

	// Conv and pools.
	Kernel    [2]int // KH, KW (pools)
	Strides   [2]int
	Dilations [2]int
	Pads      [4]int // top, left, bottom, right (ONNX order: begin H, W, end H, W)

	Axes     []int   // Mean (NCHW axes), Concat (Axes[0])
	KeepDims bool    // Mean
	Shape    []int64 // Reshape target (NHWC order; Shape[0] is the batch)
	Beta     float32 // Softmax

	Clamp  bool
	Lo, Hi float32

	// Quant is the output tensor's per-tensor quantization in the TFLite
	// model (nil for float outputs); used to simulate the quantized model.
	Quant *OutQuant

	// OutShape is the output's shape at the model's native input size, in
	// program layout (NCHW for rank 4).
	OutShape []int
}

// OutQuant is a per-tensor affine quantization: real = Scale·(q − ZeroPoint).
type OutQuant struct {
	Scale     float32
	ZeroPoint int64
	Signed    bool // int8 rather than uint8
}

// Const is a constant operand of an elementwise op, in program layout.
type Const struct {
	Shape []int64
	Data  []float32
}

// Program is a float, NCHW re-expression of a quantized TFLite model.
type Program struct {
	// Input is the input value's name; InputScale and InputZeroPoint are its
	// quantization (real = scale·(u8 − zero point)); InputSize is the native
	// H, W and InputChannels the channel count.
	Input          string
	InputScale     float32
	InputZeroPoint float32
	InputSize      [2]int
	InputChannels  int
	Ops            []Op
	Consts         map[string]Const
	// Output is the model's output; Logits the pre-softmax scores (the input
	// of a final SOFTMAX, else Output).
	Output string
	Logits string
}

// value returns the op producing name, or nil.
func (p *Program) producer(name string) *Op {
	for i := range p.Ops {
		if p.Ops[i].Output == name {
			return &p.Ops[i]
		}
	}
	return nil
}

// Shape returns a value's native shape in program layout.
func (p *Program) Shape(name string) ([]int, bool) {
	if name == p.Input {
		return []int{1, p.InputChannels, p.InputSize[0], p.InputSize[1]}, true
	}
	if op := p.producer(name); op != nil {
		return op.OutShape, true
	}
	return nil, false
}

// MACs returns the multiply-accumulates of one image at input size h×w
// (convolutions and fully connected layers; all spatial sizes scale with
// the input, which must be divisible by the model's total stride).
func (p *Program) MACs(h, w int) int64 {
	var total int64
	sh, sw := float64(h)/float64(p.InputSize[0]), float64(w)/float64(p.InputSize[1])
	for _, op := range p.Ops {
		switch op.Kind {
		case KindConv:
			oh, ow := op.OutShape[2], op.OutShape[3]
			// Pooled 1×1 maps stay 1×1 at any input size.
			if oh > 1 {
				oh = int(math.Round(float64(oh) * sh))
			}
			if ow > 1 {
				ow = int(math.Round(float64(ow) * sw))
			}
			k := op.WeightShape[1] * op.WeightShape[2] * op.WeightShape[3]
			total += int64(oh*ow) * op.WeightShape[0] * k
		case KindFC:
			total += op.WeightShape[0] * op.WeightShape[1]
		}
	}
	return total
}

// FromTFLite converts subgraph 0 of a quantized (or float) TFLite model
// into a float Program: weights dequantized (per tensor or per channel),
// biases dequantized with their own scale, NHWC turned into NCHW, SAME
// padding made explicit (the extra pixel at the bottom/right, as TFLite
// does), and every op's output clamped to its quantization range.
func FromTFLite(m *tflite.Model) (*Program, error) {
	sg, err := inferShapes(m, &m.Subgraphs[0])
	if err != nil {
		return nil, err
	}
	if len(sg.Inputs) != 1 || len(sg.Outputs) != 1 {
		return nil, fmt.Errorf("teacher: model has %d inputs and %d outputs, want 1 and 1", len(sg.Inputs), len(sg.Outputs))
	}
	in := &sg.Tensors[sg.Inputs[0]]
	if len(in.Shape) != 4 {
		return nil, fmt.Errorf("teacher: input %s has shape %v, want NHWC", in.Name, in.Shape)
	}
	p := &Program{
		Input:         in.Name,
		InputSize:     [2]int{int(in.Shape[1]), int(in.Shape[2])},
		InputChannels: int(in.Shape[3]),
		Consts:        map[string]Const{},
		InputScale:    1,
	}
	switch {
	case in.Type == tflite.TypeFloat32:
	case in.Quant != nil && len(in.Quant.Scale) == 1 && in.Type == tflite.TypeUint8:
		p.InputScale = in.Quant.Scale[0]
		if len(in.Quant.ZeroPoint) == 1 {
			p.InputZeroPoint = float32(in.Quant.ZeroPoint[0])
		}
	default:
		return nil, fmt.Errorf("teacher: input %s has type %v without per-tensor quantization", in.Name, in.Type)
	}
	c := converter{m: m, sg: sg, p: p, shapes: map[string][]int{p.Input: {1, p.InputChannels, p.InputSize[0], p.InputSize[1]}}}
	for i := range sg.Operators {
		if err := c.op(i); err != nil {
			return nil, err
		}
	}
	p.Output = sg.Tensors[sg.Outputs[0]].Name
	p.Logits = p.Output
	if last := p.producer(p.Output); last != nil && last.Kind == KindSoftmax {
		p.Logits = last.Inputs[0]
	}
	if p.producer(p.Output) == nil {
		return nil, fmt.Errorf("teacher: output %s is not computed by any operator", p.Output)
	}
	return p, nil
}

type converter struct {
	m      *tflite.Model
	sg     *tflite.Subgraph
	p      *Program
	shapes map[string][]int // program-layout shapes of values
}

func (c *converter) tensor(i int32) *tflite.Tensor { return &c.sg.Tensors[i] }

// nchw converts a TFLite shape to program layout.
func nchw(s []int32) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	if len(s) == 4 {
		out[1], out[2], out[3] = int(s[3]), int(s[1]), int(s[2])
	}
	return out
}

// operand returns the value name of input k, registering constants.
func (c *converter) operand(op *tflite.Operator, k int, outRank int) (string, error) {
	t := c.tensor(op.Inputs[k])
	if _, ok := c.shapes[t.Name]; ok {
		return t.Name, nil
	}
	data, err := c.m.Data(t)
	if err != nil {
		return "", err
	}
	if data == nil {
		return "", fmt.Errorf("teacher: tensor %s is used before it is computed", t.Name)
	}
	v, err := c.m.Float32(t)
	if err != nil {
		return "", err
	}
	var shape []int64
	switch {
	case len(v) == 1:
		shape = []int64{}
	case len(t.Shape) == 4:
		// NHWC constant to NCHW.
		n, h, w, ch := int(t.Shape[0]), int(t.Shape[1]), int(t.Shape[2]), int(t.Shape[3])
		if v, err = onnxb.Transpose(v, []int{n, h, w, ch}, 0, 3, 1, 2); err != nil {
			return "", fmt.Errorf("teacher: tensor %s: %w", t.Name, err)
		}
		shape = []int64{int64(n), int64(ch), int64(h), int64(w)}
	case len(t.Shape) == 1 && outRank == 4:
		shape = []int64{int64(t.Shape[0]), 1, 1} // per-channel, broadcast over H, W
	default:
		for _, d := range t.Shape {
			shape = append(shape, int64(d))
		}
	}
	c.p.Consts[t.Name] = Const{Shape: shape, Data: v}
	c.shapes[t.Name] = nil
	return t.Name, nil
}

// samePads returns TFLite SAME padding (begin, end) for one spatial axis.
func samePads(in, k, s, d int) (int, int) {
	eff := (k-1)*d + 1
	out := (in + s - 1) / s
	total := (out-1)*s + eff - in
	if total < 0 {
		total = 0
	}
	return total / 2, total - total/2
}

func actClamp(a tflite.Activation) (lo, hi float32, ok bool, err error) {
	switch a {
	case tflite.ActNone:
		return 0, 0, false, nil
	case tflite.ActRelu:
		return 0, float32(math.Inf(1)), true, nil
	case tflite.ActRelu6:
		return 0, 6, true, nil
	case tflite.ActReluN1To1:
		return -1, 1, true, nil
	}
	return 0, 0, false, fmt.Errorf("fused activation %v is not supported", a)
}

func (c *converter) op(i int) error {
	top := &c.sg.Operators[i]
	code := c.m.OperatorCodes[top.OpcodeIndex]
	if len(top.Outputs) != 1 {
		return fmt.Errorf("teacher: operator %d (%s) has %d outputs, want 1", i, code.Name(), len(top.Outputs))
	}
	outT := c.tensor(top.Outputs[0])
	op := Op{Output: outT.Name, OutShape: nchw(outT.Shape)}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("teacher: operator %d (%s -> %s): %s", i, code.Name(), outT.Name, fmt.Sprintf(format, args...))
	}
	if len(top.Inputs) == 0 || top.Inputs[0] < 0 {
		return fail("no input")
	}
	for _, in := range top.Inputs {
		if in < 0 && code.Builtin != tflite.OpConv2D && code.Builtin != tflite.OpDepthwiseConv && code.Builtin != tflite.OpFullyConnect {
			return fail("omitted input")
		}
	}
	for _, d := range outT.Shape {
		if d < 0 {
			return fail("dynamic output shape %v", outT.Shape)
		}
	}
	x0 := c.tensor(top.Inputs[0])
	in0, err := c.operand(top, 0, len(outT.Shape))
	if err != nil {
		return fail("%v", err)
	}
	op.Inputs = []string{in0}
	act := tflite.ActNone
	needInputs := func(n int) error {
		if len(top.Inputs) < n {
			return fail("%d inputs, want %d", len(top.Inputs), n)
		}
		return nil
	}
	switch code.Builtin {
	case tflite.OpConv2D, tflite.OpDepthwiseConv:
		if err := needInputs(2); err != nil {
			return err
		}
		wt := c.tensor(top.Inputs[1])
		w, err := c.m.Float32(wt)
		if err != nil {
			return fail("weights: %v", err)
		}
		if len(wt.Shape) != 4 || len(x0.Shape) != 4 || len(outT.Shape) != 4 {
			return fail("weights %v, input %v, output %v: want rank 4", wt.Shape, x0.Shape, outT.Shape)
		}
		var pad tflite.Padding
		var sw, sh, dw, dh int32
		if code.Builtin == tflite.OpConv2D {
			o, ok := top.Options.(*tflite.Conv2DOptions)
			if !ok {
				return fail("missing Conv2DOptions")
			}
			pad, sw, sh, dw, dh, act = o.Padding, o.StrideW, o.StrideH, o.DilationW, o.DilationH, o.Activation
			// [O, KH, KW, I] -> [O, I, KH, KW]
			oc, kh, kw, ic := int(wt.Shape[0]), int(wt.Shape[1]), int(wt.Shape[2]), int(wt.Shape[3])
			if ic != int(x0.Shape[3]) {
				return fail("weights %v do not match input channels %d", wt.Shape, x0.Shape[3])
			}
			if op.Weight, err = onnxb.Transpose(w, []int{oc, kh, kw, ic}, 0, 3, 1, 2); err != nil {
				return fail("weights: %v", err)
			}
			op.WeightShape = []int64{int64(oc), int64(ic), int64(kh), int64(kw)}
			op.Group = 1
		} else {
			o, ok := top.Options.(*tflite.DepthwiseConv2DOptions)
			if !ok {
				return fail("missing DepthwiseConv2DOptions")
			}
			pad, sw, sh, dw, dh, act = o.Padding, o.StrideW, o.StrideH, o.DilationW, o.DilationH, o.Activation
			// [1, KH, KW, C·M] -> [C·M, 1, KH, KW], group = C.
			kh, kw, oc := int(wt.Shape[1]), int(wt.Shape[2]), int(wt.Shape[3])
			ic := int(x0.Shape[3])
			if wt.Shape[0] != 1 || ic == 0 || oc%ic != 0 {
				return fail("depthwise weights %v for %d input channels", wt.Shape, ic)
			}
			if op.Weight, err = onnxb.Transpose(w, []int{1, kh, kw, oc}, 3, 0, 1, 2); err != nil {
				return fail("depthwise weights: %v", err)
			}
			op.WeightShape = []int64{int64(oc), 1, int64(kh), int64(kw)}
			op.Group = ic
		}
		if sw < 1 || sh < 1 || dw < 1 || dh < 1 {
			return fail("strides (%d,%d) and dilations (%d,%d) must be positive", sh, sw, dh, dw)
		}
		op.Kind = KindConv
		op.Strides = [2]int{int(sh), int(sw)}
		op.Dilations = [2]int{int(dh), int(dw)}
		op.Kernel = [2]int{int(op.WeightShape[2]), int(op.WeightShape[3])}
		if pad == tflite.PaddingSame {
			t, b := samePads(int(x0.Shape[1]), op.Kernel[0], op.Strides[0], op.Dilations[0])
			l, r := samePads(int(x0.Shape[2]), op.Kernel[1], op.Strides[1], op.Dilations[1])
			op.Pads = [4]int{t, l, b, r}
		}
		if len(top.Inputs) > 2 && top.Inputs[2] >= 0 {
			bt := c.tensor(top.Inputs[2])
			if op.Bias, err = c.m.Float32(bt); err != nil {
				return fail("bias: %v", err)
			}
			if int64(len(op.Bias)) != op.WeightShape[0] {
				return fail("bias has %d values for %d channels", len(op.Bias), op.WeightShape[0])
			}
		}
	case tflite.OpFullyConnect:
		if err := needInputs(2); err != nil {
			return err
		}
		o, _ := top.Options.(*tflite.FullyConnectedOptions)
		if o != nil {
			act = o.Activation
			if o.WeightsFormat != 0 {
				return fail("shuffled weights format %d is not supported", o.WeightsFormat)
			}
		}
		wt := c.tensor(top.Inputs[1])
		if op.Weight, err = c.m.Float32(wt); err != nil {
			return fail("weights: %v", err)
		}
		if len(wt.Shape) != 2 || len(outT.Shape) != 2 {
			return fail("weights shape %v, output %v: want [out, in] and [N, out]", wt.Shape, outT.Shape)
		}
		op.WeightShape = []int64{int64(wt.Shape[0]), int64(wt.Shape[1])}
		if len(top.Inputs) > 2 && top.Inputs[2] >= 0 {
			if op.Bias, err = c.m.Float32(c.tensor(top.Inputs[2])); err != nil {
				return fail("bias: %v", err)
			}
			if int64(len(op.Bias)) != op.WeightShape[0] {
				return fail("bias has %d values for %d outputs", len(op.Bias), op.WeightShape[0])
			}
		}
		op.Kind = KindFC
	case tflite.OpAveragePool2D, tflite.OpMaxPool2D:
		o, ok := top.Options.(*tflite.Pool2DOptions)
		if !ok || len(x0.Shape) != 4 || len(outT.Shape) != 4 {
			return fail("missing Pool2DOptions, or input %v or output %v not NHWC", x0.Shape, outT.Shape)
		}
		act = o.Activation
		h, w := int(x0.Shape[1]), int(x0.Shape[2])
		if o.Padding == tflite.PaddingValid && int(o.FilterHeight) == h && int(o.FilterWidth) == w && code.Builtin == tflite.OpAveragePool2D {
			// A pool over the whole map: global, so it stays global at other input sizes.
			op.Kind = KindGlobalAvgPool
			break
		}
		if o.FilterHeight < 1 || o.FilterWidth < 1 || o.StrideH < 1 || o.StrideW < 1 {
			return fail("bad pool filter %dx%d stride %dx%d", o.FilterHeight, o.FilterWidth, o.StrideH, o.StrideW)
		}
		op.Kind = KindAvgPool
		if code.Builtin == tflite.OpMaxPool2D {
			op.Kind = KindMaxPool
		}
		op.Kernel = [2]int{int(o.FilterHeight), int(o.FilterWidth)}
		op.Strides = [2]int{int(o.StrideH), int(o.StrideW)}
		if o.Padding == tflite.PaddingSame {
			t, b := samePads(h, op.Kernel[0], op.Strides[0], 1)
			l, r := samePads(w, op.Kernel[1], op.Strides[1], 1)
			op.Pads = [4]int{t, l, b, r}
		}
	case tflite.OpAdd, tflite.OpMul, tflite.OpSub, tflite.OpDiv:
		if err := needInputs(2); err != nil {
			return err
		}
		in1, err := c.operand(top, 1, len(outT.Shape))
		if err != nil {
			return fail("%v", err)
		}
		op.Inputs = append(op.Inputs, in1)
		if o, ok := top.Options.(*tflite.ActivationOptions); ok {
			act = o.Activation
		}
		op.Kind = map[tflite.BuiltinOperator]Kind{tflite.OpAdd: KindAdd, tflite.OpMul: KindMul, tflite.OpSub: KindSub, tflite.OpDiv: KindDiv}[code.Builtin]
	case tflite.OpHardSwish:
		op.Kind = KindHardSwish
	case tflite.OpLogistic:
		op.Kind = KindSigmoid
	case tflite.OpRelu:
		op.Kind, act = KindIdentity, tflite.ActRelu
	case tflite.OpRelu6:
		op.Kind, act = KindIdentity, tflite.ActRelu6
	case tflite.OpReluN1To1:
		op.Kind, act = KindIdentity, tflite.ActReluN1To1
	case tflite.OpQuantize, tflite.OpDequantize:
		op.Kind = KindIdentity
	case tflite.OpReshape, tflite.OpSqueeze:
		op.Kind = KindReshape
		for _, d := range outT.Shape {
			op.Shape = append(op.Shape, int64(d))
		}
		if len(op.Shape) == 0 {
			return fail("reshape to a scalar is not supported")
		}
	case tflite.OpSoftmax:
		o, _ := top.Options.(*tflite.SoftmaxOptions)
		op.Kind, op.Beta = KindSoftmax, 1
		if o != nil && o.Beta != 0 {
			op.Beta = o.Beta
		}
		if len(outT.Shape) != 2 {
			return fail("softmax over a rank-%d tensor is not supported", len(outT.Shape))
		}
	case tflite.OpMean:
		if err := needInputs(2); err != nil {
			return err
		}
		axes, err := c.m.Int32s(c.tensor(top.Inputs[1]))
		if err != nil {
			return fail("axes: %v", err)
		}
		o, _ := top.Options.(*tflite.ReducerOptions)
		op.Kind = KindMean
		op.KeepDims = o != nil && o.KeepDims
		for _, a := range axes {
			op.Axes = append(op.Axes, nchwAxis(int(a), len(x0.Shape)))
		}
		if len(x0.Shape) == 4 && !op.KeepDims && !(len(op.Axes) == 2 && op.Axes[0]+op.Axes[1] == 5) {
			return fail("MEAN over axes %v without keep_dims is only supported over H and W", axes)
		}
		if len(outT.Shape) == 4 || op.KeepDims {
			op.OutShape = nchw(outT.Shape)
		}
	case tflite.OpConcatenation:
		o, _ := top.Options.(*tflite.ConcatenationOptions)
		if o == nil {
			return fail("missing ConcatenationOptions")
		}
		act = o.Activation
		for k := 1; k < len(top.Inputs); k++ {
			v, err := c.operand(top, k, len(outT.Shape))
			if err != nil {
				return fail("%v", err)
			}
			op.Inputs = append(op.Inputs, v)
		}
		op.Kind = KindConcat
		op.Axes = []int{nchwAxis(int(o.Axis), len(outT.Shape))}
	default:
		return fmt.Errorf("teacher: operator %d: unsupported TFLite operator %s (output %s)", i, code.Name(), outT.Name)
	}
	if lo, hi, ok, err := actClamp(act); err != nil {
		return fail("%v", err)
	} else if ok {
		op.Clamp, op.Lo, op.Hi = true, lo, hi
	}
	if outT.Quant != nil {
		if lo, hi, ok := outT.Quant.Range(outT.Type); ok && outT.Type != tflite.TypeInt16 {
			op.Quant = &OutQuant{Scale: outT.Quant.Scale[0], Signed: outT.Type == tflite.TypeInt8}
			if len(outT.Quant.ZeroPoint) == 1 {
				op.Quant.ZeroPoint = outT.Quant.ZeroPoint[0]
			}
			if !op.Clamp {
				op.Clamp, op.Lo, op.Hi = true, lo, hi
			} else {
				op.Lo, op.Hi = max(op.Lo, lo), min(op.Hi, hi)
			}
		}
	}
	if _, dup := c.shapes[op.Output]; dup {
		return fail("output %s is computed twice", op.Output)
	}
	c.shapes[op.Output] = op.OutShape
	c.p.Ops = append(c.p.Ops, op)
	return nil
}

// nchwAxis maps an NHWC axis (negative counts from the end) to NCHW.
func nchwAxis(a, rank int) int {
	if a < 0 {
		a += rank
	}
	if rank != 4 {
		return a
	}
	return [4]int{0, 2, 3, 1}[a&3]
}

// Prune returns a copy of the program keeping only the ops needed to
// compute the given values (e.g. the feature maps, dropping the classifier
// head). Output and Logits are kept only if still computed.
func (p *Program) Prune(values ...string) (*Program, error) {
	need := map[string]bool{}
	for _, v := range values {
		if p.producer(v) == nil {
			return nil, fmt.Errorf("teacher: prune: no op computes %q", v)
		}
		need[v] = true
	}
	keep := make([]bool, len(p.Ops))
	for i := len(p.Ops) - 1; i >= 0; i-- {
		if need[p.Ops[i].Output] {
			keep[i] = true
			for _, in := range p.Ops[i].Inputs {
				need[in] = true
			}
		}
	}
	q := *p
	q.Ops = nil
	q.Consts = map[string]Const{}
	for i, k := range keep {
		if !k {
			continue
		}
		q.Ops = append(q.Ops, p.Ops[i])
		for _, in := range p.Ops[i].Inputs {
			if c, ok := p.Consts[in]; ok {
				q.Consts[in] = c
			}
		}
	}
	if !need[q.Output] {
		q.Output = ""
	}
	if !need[q.Logits] {
		q.Logits = ""
	}
	return &q, nil
}
