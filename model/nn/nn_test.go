package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
)

func backend(t testing.TB) compute.Backend {
	t.Helper()
	b, err := compute.NewWithConfig("go")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randn(r *rand.Rand, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

// transpose is onnxb.Transpose, failing the test on an error.
func transpose(t *testing.T, x []float32, dims []int, perm ...int) []float32 {
	t.Helper()
	y, err := onnxb.Transpose(x, dims, perm...)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func runORT(t *testing.T, b *onnxb.Builder, inputs ...ort.Tensor) []ort.Tensor {
	t.Helper()
	m, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ort.NewSession(m, nil, nil, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(inputs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestConvMatchesONNX compares Conv2D and DepthwiseConv2D with ONNX
// Runtime's Conv (an independent implementation), including TF-SAME
// asymmetric padding.
func TestConvMatchesONNX(t *testing.T) {
	be := backend(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name               string
		h, w, cin, cout, k int
		stride             int
		same               bool // TF SAME (else symmetric k/2)
		depthwise          bool
	}{
		{"3x3 s1", 9, 7, 3, 5, 3, 1, false, false},
		{"5x5 s1", 6, 5, 3, 4, 5, 1, false, false},
		{"3x3 s1 1x2 map", 1, 2, 3, 2, 3, 1, false, false},
		{"3x3 s2 even", 8, 8, 4, 6, 3, 2, false, false},
		{"3x3 s2 same", 8, 10, 4, 6, 3, 2, true, false},
		{"1x1", 5, 5, 7, 3, 1, 1, false, false},
		{"5x5 s2 same odd", 9, 9, 2, 3, 5, 2, true, false},
		{"dw 3x3 s1", 7, 7, 6, 6, 3, 1, false, true},
		{"dw 3x3 s2 same", 8, 8, 6, 6, 3, 2, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 2
			x := randn(r, n*tc.cin*tc.h*tc.w) // NCHW
			var p Padding
			if tc.same {
				p = SamePadding2D(tc.h, tc.w, tc.k, tc.stride)
			} else {
				p = Symmetric(tc.k / 2)
			}
			var kernel []float32 // GoMLX layout
			var kdims, wdims []int64
			var wonnx []float32
			group := 1
			if tc.depthwise {
				kernel = randn(r, tc.k*tc.k*tc.cin)
				kdims = []int64{int64(tc.k), int64(tc.k), int64(tc.cin)}
				wdims = []int64{int64(tc.cin), 1, int64(tc.k), int64(tc.k)}
				wonnx = transpose(t, kernel, []int{tc.k, tc.k, tc.cin}, 2, 0, 1)
				group = tc.cin
			} else {
				kernel = randn(r, tc.k*tc.k*tc.cin*tc.cout)
				kdims = []int64{int64(tc.k), int64(tc.k), int64(tc.cin), int64(tc.cout)}
				wdims = []int64{int64(tc.cout), int64(tc.cin), int64(tc.k), int64(tc.k)}
				wonnx = transpose(t, kernel, []int{tc.k, tc.k, tc.cin, tc.cout}, 3, 2, 0, 1)
			}
			b := onnxb.New()
			in := b.Input("x", onnx.TensorProto_FLOAT, n, tc.cin, tc.h, tc.w)
			wt := b.Const("w", wdims, wonnx)
			y := b.Op("Conv", []string{in, wt}, onnxb.Attrs{"group": group,
				"kernel_shape": []int64{int64(tc.k), int64(tc.k)}, "strides": []int64{int64(tc.stride), int64(tc.stride)},
				"pads": []int64{int64(p.Top), int64(p.Left), int64(p.Bottom), int64(p.Right)}})
			b.Output(y, onnx.TensorProto_FLOAT)
			ref := runORT(t, b, ort.Tensor{Shape: []int64{n, int64(tc.cin), int64(tc.h), int64(tc.w)}, Data: x})[0]
			ho, wo := int(ref.Shape[2]), int(ref.Shape[3])
			kd := make([]int, len(kdims))
			for i, d := range kdims {
				kd[i] = int(d)
			}
			got := MustExecOnce(be, func(x, k *Node) *Node {
				if tc.depthwise {
					return DepthwiseConv2D(x, k, tc.stride, p)
				}
				return Conv2D(x, k, tc.stride, p)
			}, tensors.FromFlatDataAndDimensions(transpose(t, x, []int{n, tc.cin, tc.h, tc.w}, 0, 2, 3, 1), n, tc.h, tc.w, tc.cin),
				tensors.FromFlatDataAndDimensions(kernel, kd...))
			if d := got.Shape().Dimensions; d[1] != ho || d[2] != wo || d[3] != tc.cout {
				t.Fatalf("shape %v, ONNX %v", d, ref.Shape)
			}
			want := transpose(t, ref.Data, []int{n, tc.cout, ho, wo}, 0, 2, 3, 1)
			if d := maxAbsDiff(tensors.MustCopyFlatData[float32](got), want); d > 1e-4 {
				t.Errorf("max diff %g", d)
			}
		})
	}
}

// TestUpsampleMatchesONNXResize compares the constant-matrix bilinear
// upsampling with ONNX Runtime's Resize (linear, half_pixel).
func TestUpsampleMatchesONNXResize(t *testing.T) {
	be := backend(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ h, w, H, W int }{{4, 4, 64, 64}, {8, 5, 32, 20}, {16, 16, 64, 64}, {3, 3, 3, 3}} {
		x := randn(r, 2*tc.h*tc.w)
		b := onnxb.New()
		in := b.Input("x", onnx.TensorProto_FLOAT, 2, 1, tc.h, tc.w)
		sizes := b.ConstInt64("sizes", []int64{4}, []int64{2, 1, int64(tc.H), int64(tc.W)})
		y := b.Op("Resize", []string{in, "", "", sizes}, onnxb.Attrs{"mode": "linear", "coordinate_transformation_mode": "half_pixel"})
		b.Output(y, onnx.TensorProto_FLOAT)
		ref := runORT(t, b, ort.Tensor{Shape: []int64{2, 1, int64(tc.h), int64(tc.w)}, Data: x})[0]
		got := MustExecOnce(be, func(x *Node) *Node { return Upsample(x, tc.H, tc.W) },
			tensors.FromFlatDataAndDimensions(x, 2, tc.h, tc.w))
		if d := maxAbsDiff(tensors.MustCopyFlatData[float32](got), ref.Data); d > 1e-5 {
			t.Errorf("%+v: max diff %g", tc, d)
		}
	}
}

// TestBlurMatchesDirect compares the separable blur with a direct 2-D
// Gaussian convolution with reflected borders.
func TestBlurMatchesDirect(t *testing.T) {
	be := backend(t)
	const n, sigma = 20, 1.5
	r := rand.New(rand.NewPCG(5, 6))
	x := randn(r, n*n)
	got := tensors.MustCopyFlatData[float32](MustExecOnce(be, func(x *Node) *Node { return Blur(x, sigma) },
		tensors.FromFlatDataAndDimensions(x, 1, n, n)))
	rad := int(math.Ceil(4 * sigma))
	refl := func(i int) int { // d c b a | a b c d
		for i < 0 || i >= n {
			if i < 0 {
				i = -i - 1
			}
			if i >= n {
				i = 2*n - 1 - i
			}
		}
		return i
	}
	var norm float64
	for dy := -rad; dy <= rad; dy++ {
		for dx := -rad; dx <= rad; dx++ {
			norm += math.Exp(-float64(dy*dy+dx*dx) / (2 * sigma * sigma))
		}
	}
	for y := 0; y < n; y++ {
		for xx := 0; xx < n; xx++ {
			var s float64
			for dy := -rad; dy <= rad; dy++ {
				for dx := -rad; dx <= rad; dx++ {
					s += math.Exp(-float64(dy*dy+dx*dx)/(2*sigma*sigma)) * float64(x[refl(y+dy)*n+refl(xx+dx)])
				}
			}
			if d := math.Abs(s/norm - float64(got[y*n+xx])); d > 1e-5 {
				t.Fatalf("(%d,%d): blur %g, direct %g", y, xx, got[y*n+xx], s/norm)
			}
		}
	}
}

// TestUpsampleGradient checks the autodiff gradient of the bilinear
// upsampling (and blur) against central finite differences in float64.
func TestUpsampleGradient(t *testing.T) {
	be := backend(t)
	r := rand.New(rand.NewPCG(7, 8))
	const h, w, H, W = 4, 5, 16, 12
	x := make([]float64, 2*h*w)
	wt := make([]float64, 2*H*W)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	for i := range wt {
		wt[i] = r.NormFloat64()
	}
	loss := func(x, wt *Node) *Node {
		// A non-linear loss so the gradient depends on x.
		return ReduceAllSum(Mul(wt, Square(Blur(Upsample(x, H, W), 1))))
	}
	exec := MustNewExec(be, func(x, wt *Node) []*Node {
		l := loss(x, wt)
		return []*Node{l, Gradient(l, x)[0]}
	})
	xt := func(v []float64) *tensors.Tensor { return tensors.FromFlatDataAndDimensions(v, 2, h, w) }
	wtt := tensors.FromFlatDataAndDimensions(wt, 2, H, W)
	out := exec.MustCall(xt(x), wtt)
	grad := tensors.MustCopyFlatData[float64](out[1])
	const eps = 1e-6
	for i := range x {
		xp := append([]float64(nil), x...)
		xm := append([]float64(nil), x...)
		xp[i] += eps
		xm[i] -= eps
		lp := tensors.ToScalar[float64](exec.MustCall(xt(xp), wtt)[0])
		lm := tensors.ToScalar[float64](exec.MustCall(xt(xm), wtt)[0])
		fd := (lp - lm) / (2 * eps)
		if math.Abs(fd-grad[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
			t.Errorf("x[%d]: autodiff %g, finite difference %g", i, grad[i], fd)
		}
	}
}

// TestConvGradient checks Conv2D's and DepthwiseConv2D's autodiff
// gradients with respect to the input and the kernel against central
// finite differences in float64, on each way they are built: nine shifted
// products (3×3 and 5×5 same-size, where the shifts carry a custom
// gradient), im2col of strided slices (stride 2) and shifted windows
// (depthwise).
func TestConvGradient(t *testing.T) {
	be := backend(t)
	r := rand.New(rand.NewPCG(9, 10))
	for _, tc := range []struct {
		name             string
		h, w, c, cout, k int
		stride           int
		depthwise        bool
	}{
		{"3x3 s1", 5, 4, 2, 3, 3, 1, false},
		{"5x5 s1", 4, 5, 2, 2, 5, 1, false},
		{"3x3 s2", 5, 6, 2, 3, 3, 2, false},
		{"dw 3x3 s1", 4, 4, 3, 3, 3, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xdims := []int{1, tc.h, tc.w, tc.c}
			kdims := []int{tc.k, tc.k, tc.c, tc.cout}
			if tc.depthwise {
				kdims = kdims[:3]
			}
			conv := func(x, k *Node) *Node {
				if tc.depthwise {
					return DepthwiseConv2D(x, k, tc.stride, Symmetric(tc.k/2))
				}
				return Conv2D(x, k, tc.stride, Symmetric(tc.k/2))
			}
			fill := func(dims []int) []float64 {
				n := 1
				for _, d := range dims {
					n *= d
				}
				v := make([]float64, n)
				for i := range v {
					v[i] = r.NormFloat64()
				}
				return v
			}
			x, k := fill(xdims), fill(kdims)
			var wt []float64
			exec := MustNewExec(be, func(x, k, wt *Node) []*Node {
				l := ReduceAllSum(Mul(wt, Square(conv(x, k)))) // non-linear, so the gradient depends on both
				g := Gradient(l, x, k)
				return []*Node{l, g[0], g[1]}
			})
			pad := tc.k / 2
			wdims := []int{1, OutSize(tc.h, tc.k, tc.stride, pad, pad), OutSize(tc.w, tc.k, tc.stride, pad, pad), tc.cout}
			wt = fill(wdims)
			call := func(x, k []float64) []*tensors.Tensor {
				return exec.MustCall(tensors.FromFlatDataAndDimensions(x, xdims...),
					tensors.FromFlatDataAndDimensions(k, kdims...), tensors.FromFlatDataAndDimensions(wt, wdims...))
			}
			out := call(x, k)
			const eps = 1e-6
			for a, v := range [][]float64{x, k} {
				grad := tensors.MustCopyFlatData[float64](out[1+a])
				for i := range v {
					old := v[i]
					v[i] = old + eps
					lp := tensors.ToScalar[float64](call(x, k)[0])
					v[i] = old - eps
					lm := tensors.ToScalar[float64](call(x, k)[0])
					v[i] = old
					fd := (lp - lm) / (2 * eps)
					if math.Abs(fd-grad[i]) > 1e-6*math.Max(1, math.Abs(fd)) {
						t.Errorf("%s[%d]: autodiff %g, finite difference %g", []string{"x", "kernel"}[a], i, grad[i], fd)
					}
				}
			}
		})
	}
}

func TestSamePadding(t *testing.T) {
	for _, tc := range []struct{ in, k, s, b, a int }{
		{224, 3, 2, 0, 1}, {112, 3, 1, 1, 1}, {7, 3, 2, 1, 1}, {8, 1, 1, 0, 0}, {9, 5, 2, 2, 2},
	} {
		b, a := SamePadding(tc.in, tc.k, tc.s)
		if b != tc.b || a != tc.a {
			t.Errorf("SamePadding(%d,%d,%d) = %d,%d, want %d,%d", tc.in, tc.k, tc.s, b, a, tc.b, tc.a)
		}
	}
}

// TestBoxPoolMatchesDirect compares BoxPool with a direct average over each
// window, clipped at the borders, on a non-square NHWC tensor.
func TestBoxPoolMatchesDirect(t *testing.T) {
	be := backend(t)
	const n, h, w, c = 2, 7, 9, 3
	r := rand.New(rand.NewPCG(8, 9))
	x := randn(r, n*h*w*c)
	for _, rad := range []int{0, 1, 2, 5} {
		got := tensors.MustCopyFlatData[float32](MustExecOnce(be, func(x *Node) *Node { return BoxPool(x, rad) },
			tensors.FromFlatDataAndDimensions(x, n, h, w, c)))
		for b := 0; b < n; b++ {
			for y := 0; y < h; y++ {
				for xx := 0; xx < w; xx++ {
					for ch := 0; ch < c; ch++ {
						var s, k float64
						for yy := max(y-rad, 0); yy <= min(y+rad, h-1); yy++ {
							for x2 := max(xx-rad, 0); x2 <= min(xx+rad, w-1); x2++ {
								s += float64(x[((b*h+yy)*w+x2)*c+ch])
								k++
							}
						}
						i := ((b*h+y)*w+xx)*c + ch
						if d := math.Abs(s/k - float64(got[i])); d > 1e-5 {
							t.Fatalf("r=%d (%d,%d,%d,%d): BoxPool %g, direct %g", rad, b, y, xx, ch, got[i], s/k)
						}
					}
				}
			}
		}
	}
}
