package teacher

import (
	"fmt"

	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/multiad/multiad/model/nn"
)

// GoMLX builds the teacher's feature maps in a GoMLX graph, for training
// (the weights are constants: the teacher is frozen). image is NHWC
// [N, H, W, 3] float32 RGB in [0, 1], with H and W divisible by 32; the
// result holds the feature maps at strides 4, 8 and 16, NHWC. Only the
// layers the features need are built. It mirrors the ONNX graph op for op
// (convolutions through model/nn's im2col Conv2D and DepthwiseConv2D).
func (t *Teacher) GoMLX(image *G.Node) (feats [3]*G.Node, err error) {
	if t.Program == nil {
		return feats, fmt.Errorf("teacher: GoMLX needs a TFLite import (this teacher is an ONNX graph: %s)", t.Source)
	}
	p, err := t.Program.Prune(t.Features[:]...)
	if err != nil {
		return feats, err
	}
	vals, err := p.GoMLX(image)
	if err != nil {
		return feats, err
	}
	for k, f := range t.Features {
		feats[k] = vals[f]
	}
	return feats, nil
}

// GoMLX builds the program in a GoMLX graph from an NHWC image in [0, 1]
// and returns every op's output by name, NHWC (rank-4) or [N, K] (rank 2).
// Model/nn's convolutions panic on shape errors; they are returned as errors.
func (p *Program) GoMLX(image *G.Node) (vals map[string]*G.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			vals, err = nil, fmt.Errorf("teacher: building the GoMLX graph: %v", r)
		}
	}()
	g := image.Graph()
	dt := image.DType()
	cnst := func(data []float32, dims ...int) *G.Node {
		return G.ConvertDType(G.ConstTensor(g, tensors.FromFlatDataAndDimensions(data, dims...)), dt)
	}
	scalar := func(v float32) *G.Node { return G.ConvertDType(G.Const(g, v), dt) }
	vals = map[string]*G.Node{}
	vals[p.Input] = G.Add(G.Mul(image, scalar(255*p.InputScale)), scalar(-p.InputZeroPoint*p.InputScale))
	operand := func(v string, rank int) (*G.Node, error) {
		if n, ok := vals[v]; ok {
			return n, nil
		}
		c, ok := p.Consts[v]
		if !ok {
			return nil, fmt.Errorf("teacher: value %s is used before it is computed", v)
		}
		return constNHWC(c, rank, cnst)
	}
	for i := range p.Ops {
		op := &p.Ops[i]
		rank := len(op.OutShape)
		ins := make([]*G.Node, len(op.Inputs))
		for k, v := range op.Inputs {
			if ins[k], err = operand(v, rank); err != nil {
				return nil, err
			}
		}
		var y *G.Node
		switch op.Kind {
		case KindConv:
			if op.Dilations != [2]int{1, 1} || op.Strides[0] != op.Strides[1] || op.Kernel[0] != op.Kernel[1] {
				return nil, fmt.Errorf("teacher: GoMLX: conv %s with dilations %v, strides %v, kernel %v is not supported",
					op.Output, op.Dilations, op.Strides, op.Kernel)
			}
			k := op.Kernel[0]
			pad := nn.Padding{Top: op.Pads[0], Left: op.Pads[1], Bottom: op.Pads[2], Right: op.Pads[3]}
			o, ci := int(op.WeightShape[0]), int(op.WeightShape[1])
			switch {
			case op.Group == 1:
				w := make([]float32, len(op.Weight)) // [O, I, k, k] -> [k, k, I, O]
				for a := 0; a < o; a++ {
					for q := 0; q < ci; q++ {
						for yy := 0; yy < k; yy++ {
							for xx := 0; xx < k; xx++ {
								w[((yy*k+xx)*ci+q)*o+a] = op.Weight[((a*ci+q)*k+yy)*k+xx]
							}
						}
					}
				}
				y = nn.Conv2D(ins[0], cnst(w, k, k, ci, o), op.Strides[0], pad)
			case ci == 1 && op.Group == o:
				w := make([]float32, len(op.Weight)) // [C, 1, k, k] -> [k, k, C]
				for c := 0; c < o; c++ {
					for yy := 0; yy < k; yy++ {
						for xx := 0; xx < k; xx++ {
							w[(yy*k+xx)*o+c] = op.Weight[(c*k+yy)*k+xx]
						}
					}
				}
				y = nn.DepthwiseConv2D(ins[0], cnst(w, k, k, o), op.Strides[0], pad)
			default:
				return nil, fmt.Errorf("teacher: GoMLX: grouped conv %s (group %d) is not supported", op.Output, op.Group)
			}
			if op.Bias != nil {
				y = nn.AddBias(y, cnst(op.Bias, len(op.Bias)))
			}
		case KindAdd:
			y = G.Add(ins[0], ins[1])
		case KindSub:
			y = G.Sub(ins[0], ins[1])
		case KindMul:
			y = G.Mul(ins[0], ins[1])
		case KindDiv:
			y = G.Div(ins[0], ins[1])
		case KindGlobalAvgPool:
			y = G.ReduceMean(ins[0], 1, 2)
			y = G.InsertAxes(y, 1, 1)
		case KindMean:
			axes := make([]int, len(op.Axes))
			for k, a := range op.Axes {
				axes[k] = [4]int{0, 3, 1, 2}[a] // NCHW -> NHWC
			}
			y = G.ReduceMean(ins[0], axes...)
			if op.KeepDims {
				dims := ins[0].Shape().Dimensions
				nd := append([]int(nil), dims...)
				for _, a := range axes {
					nd[a] = 1
				}
				y = G.Reshape(y, nd...)
			}
		case KindReshape:
			dims := make([]int, len(op.Shape))
			dims[0] = ins[0].Shape().Dimensions[0]
			for k := 1; k < len(op.Shape); k++ {
				dims[k] = int(op.Shape[k])
			}
			y = G.Reshape(ins[0], dims...)
		case KindSoftmax:
			y = G.Softmax(G.Mul(ins[0], scalar(op.Beta)), -1)
		case KindFC:
			x := ins[0]
			if x.Rank() != 2 {
				x = G.Reshape(x, x.Shape().Dimensions[0], -1)
			}
			w := cnst(op.Weight, int(op.WeightShape[0]), int(op.WeightShape[1]))
			y = G.MatMul(x, G.Transpose(w, 0, 1))
			if op.Bias != nil {
				y = nn.AddBias(y, cnst(op.Bias, len(op.Bias)))
			}
		case KindHardSwish:
			y = G.Mul(ins[0], G.Div(G.ClipScalar(G.Add(ins[0], scalar(3)), 0, 6), scalar(6)))
		case KindSigmoid:
			y = G.Sigmoid(ins[0])
		case KindIdentity:
			y = ins[0]
		case KindConcat:
			a := op.Axes[0]
			if rank == 4 {
				a = [4]int{0, 3, 1, 2}[a]
			}
			y = G.Concatenate(ins, a)
		default:
			return nil, fmt.Errorf("teacher: GoMLX: op %s of kind %s is not supported", op.Output, op.Kind)
		}
		if op.Clamp {
			y = G.ClipScalar(y, float64(op.Lo), float64(op.Hi))
		}
		vals[op.Output] = y
	}
	return vals, nil
}

// constNHWC turns a program constant (NCHW layout) into a GoMLX constant
// broadcastable against a rank-rank NHWC value.
func constNHWC(c Const, rank int, cnst func([]float32, ...int) *G.Node) (*G.Node, error) {
	ones := func(last int) []int {
		d := make([]int, rank)
		for i := range d {
			d[i] = 1
		}
		d[rank-1] = last
		return d
	}
	switch {
	case len(c.Data) == 1:
		return cnst(c.Data, ones(1)...), nil
	case len(c.Shape) == 3 && c.Shape[1] == 1 && c.Shape[2] == 1 && rank == 4:
		return cnst(c.Data, ones(int(c.Shape[0]))...), nil
	case len(c.Shape) == 4:
		n, ch, h, w := int(c.Shape[0]), int(c.Shape[1]), int(c.Shape[2]), int(c.Shape[3])
		d := make([]float32, len(c.Data))
		for a := 0; a < n; a++ {
			for q := 0; q < ch; q++ {
				for y := 0; y < h; y++ {
					for x := 0; x < w; x++ {
						d[((a*h+y)*w+x)*ch+q] = c.Data[((a*ch+q)*h+y)*w+x]
					}
				}
			}
		}
		return cnst(d, n, h, w, ch), nil
	case len(c.Shape) == rank:
		dims := make([]int, rank)
		for i, s := range c.Shape {
			dims[i] = int(s)
		}
		return cnst(c.Data, dims...), nil
	}
	return nil, fmt.Errorf("teacher: GoMLX: constant of shape %v for a rank-%d value is not supported", c.Shape, rank)
}
