package main

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"

	. "github.com/multiad/multiad/model/nn"
)

// convT is nn.Conv2D (3×3, im2col) with the product laid out so that the
// weight gradient needs no transposes of the im2col matrix: Yᵀ =
// DotGeneral(W, cols) then a transpose of the [Cout, M] output (hack:
// the forward product as in nn.Conv2D, bit-identical, and the weight
// gradient through an extra transposed product B − stop_gradient(B)).
func convT(x, kernel *Node, stride int, p Padding, hack bool) *Node {
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
	cols := Concatenate(ps, 3)
	c2 := Reshape(cols, n*ho*wo, k*k*cin)
	w2 := Reshape(kernel, k*k*cin, cout)
	if !hack {
		yt := DotGeneral(w2, []int{0}, nil, c2, []int{1}, nil)
		return Reshape(Transpose(yt, 0, 1), n, ho, wo, cout)
	}
	a := MatMul(c2, StopGradient(w2))
	b := Transpose(DotGeneral(w2, []int{0}, nil, StopGradient(c2), []int{1}, nil), 0, 1)
	y := Add(a, Sub(b, StopGradient(b)))
	return Reshape(y, n, ho, wo, cout)
}

// BenchmarkConvGrad times one convolution's forward pass and both
// gradients (issue 20 item 6) as nn.Conv2D builds it ("old") and in the two
// transposed layouts of convT, in CPU seconds per call:
//
//	nice -n 19 go test -run XXX -bench ConvGrad/64 -benchtime 8x ./bench/cmd/train
func BenchmarkConvGrad(b *testing.B) {
	for _, sh := range [][3]int{{64, 32, 32}, {128, 3, 16}} {
		for _, mode := range []string{"old", "tout", "hack"} {
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
// mode says ("old": nn's Conv2D; "tout": convT with the transposed product;
// "hack": convT keeping Conv2D's forward pass), and the gradients with
// respect to x and w of its output's dot product with c: the graph
// BenchmarkConvGrad times and TestConvGradEqual compares.
func convGradGraph(mode string) func(x, w, c *Node) []*Node {
	return func(x, w, c *Node) []*Node {
		var y *Node
		switch mode {
		case "old":
			y = Conv2D(x, w, 1, Symmetric(1))
		case "tout":
			y = convT(x, w, 1, Symmetric(1), false)
		default:
			y = convT(x, w, 1, Symmetric(1), true)
		}
		loss := ReduceAllSum(Mul(y, c))
		return append([]*Node{y}, Gradient(loss, x, w)...)
	}
}

// TestConvGradEqual checks that convT's outputs and gradients match
// nn.Conv2D's to float32 rounding.
func TestConvGradEqual(t *testing.T) {
	be, _ := compute.NewWithConfig("go:ops_sequential")
	r := rand.New(rand.NewPCG(1, 2))
	H, cin, cout := 16, 8, 8
	x := tensors.FromFlatDataAndDimensions(randn(r, 2*H*H*cin), 2, H, H, cin)
	w := tensors.FromFlatDataAndDimensions(randn(r, 9*cin*cout), 3, 3, cin, cout)
	c := tensors.FromFlatDataAndDimensions(randn(r, 2*H*H*cout), 2, H, H, cout)
	var outs [3][]*tensors.Tensor
	for i, mode := range []string{"old", "tout", "hack"} {
		e := MustNewExec(be, convGradGraph(mode))
		outs[i] = e.MustCall(x, w, c)
	}
	for i := 1; i < 3; i++ {
		for j := range 3 {
			a, b := tensors.MustCopyFlatData[float32](outs[0][j]), tensors.MustCopyFlatData[float32](outs[i][j])
			var md float64
			for k := range a {
				md = max(md, float64(abs32(a[k]-b[k])))
			}
			t.Logf("mode %d out %d max diff %g", i, j, md)
			if md > 1e-3 {
				t.Errorf("mode %d output %d differs from nn.Conv2D by %g", i, j, md)
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
