package main

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	timage "github.com/gomlx/gomlx/core/tensors/images"

	. "github.com/multiad/multiad/model/nn"
)

// convMatMul is the im2col convolution nn.Conv2D computed before issue 20
// item 6: nine strided slices of the zero-padded map, concatenated, times
// the kernel as a [N·H·W, Cout] product, whose weight gradient colsᵀ·dY
// makes the backend transpose the im2col matrix.
func convMatMul(x, kernel *Node, stride int, p Padding) *Node {
	kd := kernel.Shape().Dimensions
	k, cin, cout := kd[0], kd[2], kd[3]
	d := x.Shape().Dimensions
	n := d[0]
	ho, wo := OutSize(d[1], k, stride, p.Top, p.Bottom), OutSize(d[2], k, stride, p.Left, p.Right)
	xp := ZeroPad(x, p)
	var ps []*Node
	for dy := range k {
		for dx := range k {
			ps = append(ps, Slice(xp, AxisRange(),
				AxisRange(dy, dy+stride*(ho-1)+1).Stride(stride),
				AxisRange(dx, dx+stride*(wo-1)+1).Stride(stride),
				AxisRange()))
		}
	}
	cols := Reshape(Concatenate(ps, 3), n*ho*wo, k*k*cin)
	return Reshape(MatMul(cols, Reshape(kernel, k*k*cin, cout)), n, ho, wo, cout)
}

// convModes are the ways BenchmarkConvGrad and TestConvGradEqual compute a
// convolution: "conv2d" is nn.Conv2D (for this 3×3 same-size convolution,
// the sum of nine products of shifted maps), "matmul" its im2col product
// before issue 20 item 6 (convMatMul), "native" GoMLX's own ConvGeneral.
var convModes = []string{"conv2d", "matmul", "native"}

// BenchmarkConvGrad times one convolution's forward pass and both
// gradients (issue 20 item 6) in each of convModes, in CPU seconds per
// call:
//
//	go test -run XXX -bench ConvGrad/64 -benchtime 8x ./bench/cmd/train
func BenchmarkConvGrad(b *testing.B) {
	for _, sh := range [][3]int{{64, 32, 32}, {128, 3, 16}} {
		for _, mode := range convModes {
			b.Run(fmt.Sprintf("%dx%d_%d_%s", sh[0], sh[1], sh[2], mode), func(b *testing.B) {
				be, err := compute.NewWithConfig("go:ops_sequential")
				if err != nil {
					b.Fatal(err)
				}
				H, cin, cout := sh[0], sh[1], sh[2]
				r := rand.New(rand.NewPCG(1, 2))
				x := tensors.FromFlatDataAndDimensions(randn(r, 8*H*H*cin), 8, H, H, cin)
				w := tensors.FromFlatDataAndDimensions(randn(r, 9*cin*cout), 3, 3, cin, cout)
				c := tensors.FromFlatDataAndDimensions(randn(r, 8*H*H*cout), 8, H, H, cout)
				e := MustNewExec(be, convGradGraph(mode))
				e.MustCall(x, w, c) // compiles, and warms up
				c0 := cpuSeconds()
				b.ResetTimer()
				for b.Loop() {
					e.MustCall(x, w, c)
				}
				b.ReportMetric((cpuSeconds()-c0)/float64(b.N), "cpu-s/op")
			})
		}
	}
}

// convGradGraph is a 3×3 same-padded convolution of x by w, computed as
// mode says (one of convModes), and the gradients with respect to x and w
// of its output's dot product with c: the graph BenchmarkConvGrad times and
// TestConvGradEqual compares.
func convGradGraph(mode string) func(x, w, c *Node) []*Node {
	return func(x, w, c *Node) []*Node {
		var y *Node
		switch mode {
		case "conv2d":
			y = Conv2D(x, w, 1, Symmetric(1))
		case "matmul":
			y = convMatMul(x, w, 1, Symmetric(1))
		case "native":
			y = Convolve(x, w).ChannelsAxis(timage.ChannelsLast).PadSame().Done()
		default:
			panic("unknown mode " + mode)
		}
		loss := ReduceAllSum(Mul(y, c))
		return append([]*Node{y}, Gradient(loss, x, w)...)
	}
}

// TestConvGradEqual checks nn.Conv2D's output and gradients against GoMLX's
// own convolution (an independent implementation) and against the earlier
// im2col product (convMatMul): the same to float32 rounding, which here
// is 2e-6 of the largest value (Conv2D sums a 3×3 same-size convolution
// over its nine windows, the others over one product or another order).
func TestConvGradEqual(t *testing.T) {
	be, _ := compute.NewWithConfig("go:ops_sequential")
	r := rand.New(rand.NewPCG(1, 2))
	H, cin, cout := 16, 8, 8
	x := tensors.FromFlatDataAndDimensions(randn(r, 2*H*H*cin), 2, H, H, cin)
	w := tensors.FromFlatDataAndDimensions(randn(r, 9*cin*cout), 3, 3, cin, cout)
	c := tensors.FromFlatDataAndDimensions(randn(r, 2*H*H*cout), 2, H, H, cout)
	outs := map[string][]*tensors.Tensor{}
	for _, mode := range convModes {
		outs[mode] = MustNewExec(be, convGradGraph(mode)).MustCall(x, w, c)
	}
	names := []string{"output", "input gradient", "weight gradient"}
	for _, ref := range convModes[1:] {
		for j, name := range names {
			a, b := tensors.MustCopyFlatData[float32](outs["conv2d"][j]), tensors.MustCopyFlatData[float32](outs[ref][j])
			var md, scale float64
			for k := range a {
				md = max(md, float64(abs32(a[k]-b[k])))
				scale = max(scale, float64(abs32(b[k])))
			}
			t.Logf("%s against %s: largest difference %g (largest value %g)", name, ref, md, scale)
			limit := 2e-6 * scale
			if md > limit {
				t.Errorf("nn.Conv2D's %s differs from %s's by %g (limit %g)", name, ref, md, limit)
			}
		}
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

func randn(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}
