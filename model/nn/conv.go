// Package nn holds the GoMLX building blocks of the Multi-AD student,
// discriminator and anomaly map: im2col convolutions (which train fast on
// GoMLX's pure-Go backend and have gradients there), squeeze-and-excitation,
// bilinear upsampling and Gaussian blur as products with constant matrices,
// L2 normalisation and cosine distance maps.
//
// Feature maps are NHWC: [batch, height, width, channels]. Convolution
// kernels are [k, k, Cin, Cout]; depthwise kernels are [k, k, C].
package nn

import (
	"fmt"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
)

// Padding is the number of zero rows/columns added on each side of a map.
type Padding struct{ Top, Bottom, Left, Right int }

// Symmetric pads p on every side.
func Symmetric(p int) Padding { return Padding{p, p, p, p} }

// SamePadding returns TensorFlow's SAME padding for one axis: the output
// has ceil(in/stride) positions and the odd extra pixel goes after (bottom
// or right).
func SamePadding(in, k, stride int) (before, after int) {
	out := (in + stride - 1) / stride
	total := (out-1)*stride + k - in
	if total < 0 {
		total = 0
	}
	return total / 2, total - total/2
}

// SamePadding2D is SamePadding for both spatial axes of an h×w map.
func SamePadding2D(h, w, k, stride int) Padding {
	t, b := SamePadding(h, k, stride)
	l, r := SamePadding(w, k, stride)
	return Padding{t, b, l, r}
}

// OutSize is the output length of a k-wide window with the given stride over
// in positions padded by before and after.
func OutSize(in, k, stride, before, after int) int {
	return (in+before+after-k)/stride + 1
}

// ZeroPad pads an NHWC map with zeros by concatenation (the backend's Pad op
// has no gradient).
func ZeroPad(x *Node, p Padding) *Node {
	if p == (Padding{}) {
		return x
	}
	g := x.Graph()
	d := x.Shape().Dimensions
	n, h, w, c := d[0], d[1], d[2], d[3]
	zeros := func(dims ...int) *Node {
		return Zeros(g, shapes.Make(x.DType(), dims...))
	}
	if p.Top > 0 || p.Bottom > 0 {
		parts := []*Node{}
		if p.Top > 0 {
			parts = append(parts, zeros(n, p.Top, w, c))
		}
		parts = append(parts, x)
		if p.Bottom > 0 {
			parts = append(parts, zeros(n, p.Bottom, w, c))
		}
		x = Concatenate(parts, 1)
		h += p.Top + p.Bottom
	}
	if p.Left > 0 || p.Right > 0 {
		parts := []*Node{}
		if p.Left > 0 {
			parts = append(parts, zeros(n, h, p.Left, c))
		}
		parts = append(parts, x)
		if p.Right > 0 {
			parts = append(parts, zeros(n, h, p.Right, c))
		}
		x = Concatenate(parts, 2)
	}
	return x
}

// patches returns the k² strided windows of the padded map, each
// [N, Ho, Wo, C], in (dy, dx) row-major order. Windows of a stride-1
// convolution that keeps the map's size are shifted copies of x (see
// shifted); the others are strided slices of the zero-padded map.
func patches(x *Node, k, stride int, p Padding) ([]*Node, int, int) {
	d := x.Shape().Dimensions
	if len(d) != 4 {
		panic(fmt.Sprintf("nn: convolution input must be NHWC, got shape %s", x.Shape()))
	}
	ho := OutSize(d[1], k, stride, p.Top, p.Bottom)
	wo := OutSize(d[2], k, stride, p.Left, p.Right)
	if ho <= 0 || wo <= 0 {
		panic(fmt.Sprintf("nn: %dx%d kernel with stride %d does not fit a %dx%d map", k, k, stride, d[1], d[2]))
	}
	out := make([]*Node, 0, k*k)
	if keepsSize(d, k, stride, p) {
		for dy := 0; dy < k; dy++ {
			for dx := 0; dx < k; dx++ {
				out = append(out, shifted(x, dy-p.Top, dx-p.Left))
			}
		}
		return out, ho, wo
	}
	x = ZeroPad(x, p)
	for dy := 0; dy < k; dy++ {
		for dx := 0; dx < k; dx++ {
			out = append(out, Slice(x, AxisRange(),
				AxisRange(dy, dy+stride*(ho-1)+1).Stride(stride),
				AxisRange(dx, dx+stride*(wo-1)+1).Stride(stride),
				AxisRange()))
		}
	}
	return out, ho, wo
}

// keepsSize reports whether a k×k convolution with this stride and padding
// of an NHWC map of dimensions d is stride-1 and keeps the map's size: its
// windows are then shifted copies of the map (patches, convShifts).
func keepsSize(d []int, k, stride int, p Padding) bool {
	return stride == 1 && OutSize(d[1], k, 1, p.Top, p.Bottom) == d[1] && OutSize(d[2], k, 1, p.Left, p.Right) == d[2]
}

// shifted returns the NHWC map x moved by (sy, sx) pixels, zeros shifted
// in: out[n, i, j, c] = x[n, i+sy, j+sx, c], 0 where that is outside x. It
// is the window (dy, dx) = (sy+Top, sx+Left) of a same-size convolution,
// the same values Slice takes from the zero-padded map. GoMLX's pure-Go
// backend copies a Pad row by row (memmove) but a Slice element by element,
// 10× slower, and the slices of im2col were the largest cost of a training
// step (issue 20 item 6). Pad takes the shift as negative padding, which
// its own gradient (a Slice from the negative start) cannot handle, so the
// gradient is attached separately: the opposite shift of the adjoint,
// through IdentityWithCustomGradient. The value Pad(StopGradient(x)) +
// (x' − StopGradient(x')) is exactly the shift (x' − x' is 0).
func shifted(x *Node, sy, sx int) *Node {
	if sy == 0 && sx == 0 {
		return x
	}
	shift := func(v *Node, sy, sx int) *Node {
		return Pad(v, ScalarZero(v.Graph(), v.DType()), compute.PadAxis{},
			compute.PadAxis{Start: -sy, End: sy}, compute.PadAxis{Start: -sx, End: sx}, compute.PadAxis{})
	}
	through := IdentityWithCustomGradient(x, func(_, v *Node) *Node { return shift(v, -sy, -sx) })
	return Add(shift(StopGradient(x), sy, sx), Sub(through, StopGradient(through)))
}

// Conv2D convolves an NHWC map with a [k, k, Cin, Cout] kernel. It is a
// cross-correlation, like ONNX Conv (whose weight is this kernel
// transposed to [Cout, Cin, k, k]). A stride-1 convolution that keeps the
// map's size (3×3 with padding 1) is convShifts; the others are im2col:
// the k² strided slices are concatenated along channels and multiplied by
// the kernel reshaped to [k·k·Cin, Cout].
//
// The products are computed transposed, Yᵀ = Wᵀ·colsᵀ as a [Cout, N·H·W]
// matrix, then transposed back. The output is the same (each value is the
// same dot product), but the weight gradient colsᵀ·dY then contracts the
// leading axis of both operands in the layout GoMLX's matrix multiply
// takes, so the backend does not transpose the large input matrix in every
// training step; only the [Cout, N·H·W] output and its gradient are
// transposed. With convShifts this made a 256 px training step about 1.6×
// faster on GoMLX v0.28.14 (issue 20 item 6; BenchmarkConvGrad in
// bench/cmd/train compares the layouts, bench/readings/train.md has the
// figures).
func Conv2D(x, kernel *Node, stride int, p Padding) *Node {
	kd := kernel.Shape().Dimensions
	if len(kd) != 4 || kd[0] != kd[1] {
		panic(fmt.Sprintf("nn: Conv2D kernel must be [k,k,Cin,Cout], got %s", kernel.Shape()))
	}
	k, cin, cout := kd[0], kd[2], kd[3]
	if c := x.Shape().Dimensions[3]; c != cin {
		panic(fmt.Sprintf("nn: Conv2D kernel takes %d channels, input has %d", cin, c))
	}
	d := x.Shape().Dimensions
	n := d[0]
	if k > 1 && keepsSize(d, k, stride, p) {
		return convShifts(x, kernel, p)
	}
	var cols *Node
	ho, wo := 0, 0
	if k == 1 && stride == 1 && p == (Padding{}) {
		cols, ho, wo = x, d[1], d[2]
	} else {
		var ps []*Node
		ps, ho, wo = patches(x, k, stride, p)
		if len(ps) == 1 {
			cols = ps[0]
		} else {
			cols = Concatenate(ps, 3)
		}
	}
	// yt[o, m] = Σ_j kernel[j, o]·cols[m, j]
	yt := DotGeneral(Reshape(kernel, k*k*cin, cout), []int{0}, nil, Reshape(cols, n*ho*wo, k*k*cin), []int{1}, nil)
	return Reshape(Transpose(yt, 0, 1), n, ho, wo, cout)
}

// convShifts is Conv2D for a stride-1 convolution that keeps the map's
// size: the sum over the k² windows of each shifted map times its
// [Cin, Cout] slice of the kernel, without an im2col matrix. On GoMLX's
// pure-Go backend the im2col matrix cost more than its products: its
// concatenation, and in the gradient one element-by-element Slice of the
// matrix per window. Here the windows are shifted copies (rows copied with
// memmove) and their gradients come from the products directly. The sum
// runs over the windows in another order than im2col's single product, so
// values differ from it by float32 rounding (TestConvGradEqual in
// bench/cmd/train).
func convShifts(x, kernel *Node, p Padding) *Node {
	kd := kernel.Shape().Dimensions
	k, cin, cout := kd[0], kd[2], kd[3]
	d := x.Shape().Dimensions
	m := d[0] * d[1] * d[2]
	var yt *Node
	// Each window's product follows the window (not patches' windows all
	// first): the order of the nodes sets the order in which the input's
	// gradient sums the windows' contributions.
	for dy := 0; dy < k; dy++ {
		for dx := 0; dx < k; dx++ {
			win := Reshape(shifted(x, dy-p.Top, dx-p.Left), m, cin)
			w := Reshape(Slice(kernel, AxisElem(dy), AxisElem(dx), AxisRange(), AxisRange()), cin, cout)
			// t[o, m] = Σ_c w[c, o]·win[m, c]
			t := DotGeneral(w, []int{0}, nil, win, []int{1}, nil)
			if yt == nil {
				yt = t
			} else {
				yt = Add(yt, t)
			}
		}
	}
	return Reshape(Transpose(yt, 0, 1), d[0], d[1], d[2], cout)
}

// DepthwiseConv2D convolves each channel of an NHWC map with its own k×k
// filter (kernel [k, k, C]): the sum over the k² strided slices of the slice
// times its per-channel weights. ONNX: Conv with group = C and weight
// [C, 1, k, k].
func DepthwiseConv2D(x, kernel *Node, stride int, p Padding) *Node {
	kd := kernel.Shape().Dimensions
	if len(kd) != 3 || kd[0] != kd[1] {
		panic(fmt.Sprintf("nn: DepthwiseConv2D kernel must be [k,k,C], got %s", kernel.Shape()))
	}
	k, c := kd[0], kd[2]
	if xc := x.Shape().Dimensions[3]; xc != c {
		panic(fmt.Sprintf("nn: DepthwiseConv2D kernel has %d channels, input has %d", c, xc))
	}
	ps, _, _ := patches(x, k, stride, p)
	var sum *Node
	for i, s := range ps {
		w := Reshape(Slice(kernel, AxisElem(i/k), AxisElem(i%k), AxisRange()), 1, 1, 1, c)
		t := Mul(s, w)
		if sum == nil {
			sum = t
		} else {
			sum = Add(sum, t)
		}
	}
	return sum
}

// AddBias adds a per-channel bias [C] to an NHWC (or [N, C]) tensor.
func AddBias(x, bias *Node) *Node {
	r := x.Rank()
	dims := make([]int, r)
	for i := range dims {
		dims[i] = 1
	}
	dims[r-1] = bias.Shape().Dimensions[0]
	return Add(x, Reshape(bias, dims...))
}

// Relu is max(x, 0).
func Relu(x *Node) *Node { return MaxScalar(x, 0) }

// LeakyRelu is x for x > 0, else alpha·x.
func LeakyRelu(x *Node, alpha float64) *Node {
	return Max(x, MulScalar(x, alpha))
}

// GlobalAvgPool averages an NHWC map over height and width: [N, C].
func GlobalAvgPool(x *Node) *Node { return ReduceMean(x, 1, 2) }
