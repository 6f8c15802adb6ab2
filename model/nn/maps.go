package nn

import (
	"fmt"
	"math"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph"
)

// NormEps is added to the squared L2 norm before the square root in
// NormalizeChannels (the ONNX export uses the same constant).
const NormEps = 1e-12

// NormalizeChannels divides an NHWC map by its L2 norm over channels,
// x / sqrt(Σ_c x² + NormEps) (smooth at zero, so its gradient is finite).
func NormalizeChannels(x *Node) *Node {
	n := Sqrt(AddScalar(ReduceSum(Square(x), -1), NormEps))
	return Div(x, InsertAxes(n, -1))
}

// CosineDistance is 1 − cos(a, b) over the channels of two NHWC maps: [N, H, W].
func CosineDistance(a, b *Node) *Node {
	return OneMinus(ReduceSum(Mul(NormalizeChannels(a), NormalizeChannels(b)), -1))
}

// BilinearMatrix is the [out, in] matrix of 1-D linear interpolation with
// half-pixel centres (ONNX Resize linear half_pixel, PyTorch
// align_corners=False): source position (i+0.5)·in/out − 0.5, clamped to
// [0, in−1].
func BilinearMatrix(in, out int) [][]float64 {
	m := make([][]float64, out)
	scale := float64(in) / float64(out)
	for i := range m {
		m[i] = make([]float64, in)
		src := (float64(i)+0.5)*scale - 0.5
		if src < 0 {
			src = 0
		}
		if src > float64(in-1) {
			src = float64(in - 1)
		}
		i0 := int(math.Floor(src))
		f := src - float64(i0)
		i1 := i0 + 1
		if i1 > in-1 {
			i1 = in - 1
		}
		m[i][i0] += 1 - f
		m[i][i1] += f
	}
	return m
}

// GaussianMatrix is the [n, n] matrix of 1-D Gaussian smoothing with
// standard deviation sigma, kernel radius ceil(4σ) (truncated, normalised to
// sum 1) and reflect boundary (scipy.ndimage "reflect": d c b a | a b c d).
// sigma ≤ 0 gives the identity.
func GaussianMatrix(n int, sigma float64) [][]float64 {
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, n)
	}
	if sigma <= 0 {
		for i := range m {
			m[i][i] = 1
		}
		return m
	}
	r := int(math.Ceil(4 * sigma))
	w := make([]float64, 2*r+1)
	var sum float64
	for j := -r; j <= r; j++ {
		w[j+r] = math.Exp(-float64(j*j) / (2 * sigma * sigma))
		sum += w[j+r]
	}
	for i := range w {
		w[i] /= sum
	}
	for i := 0; i < n; i++ {
		for j := -r; j <= r; j++ {
			m[i][reflect(i+j, n)] += w[j+r]
		}
	}
	return m
}

// reflect maps an index outside [0, n) back inside by half-sample symmetry.
func reflect(i, n int) int {
	if n == 1 {
		return 0
	}
	period := 2 * n
	i %= period
	if i < 0 {
		i += period
	}
	if i >= n {
		i = period - 1 - i
	}
	return i
}

// MatMul2D multiplies two row-major matrices: a [n×k] and b [k×m].
func MatMul2D(a, b [][]float64) [][]float64 {
	out := make([][]float64, len(a))
	for i := range a {
		out[i] = make([]float64, len(b[0]))
		for k, av := range a[i] {
			if av == 0 {
				continue
			}
			for j, bv := range b[k] {
				out[i][j] += av * bv
			}
		}
	}
	return out
}

// Flat32 flattens a matrix to row-major float32.
func Flat32(m [][]float64) []float32 {
	var out []float32
	for _, r := range m {
		for _, v := range r {
			out = append(out, float32(v))
		}
	}
	return out
}

// constMatrix is m as a constant of the given dtype (float64 or float32).
func constMatrix(g *Graph, m [][]float64, dtype dtypes.DType) *Node {
	if dtype == dtypes.Float64 {
		var flat []float64
		for _, r := range m {
			flat = append(flat, r...)
		}
		return Reshape(Const(g, flat), len(m), len(m[0]))
	}
	return ConvertDType(Reshape(Const(g, Flat32(m)), len(m), len(m[0])), dtype)
}

// Separable applies rows·x·colsᵀ to every map of x [N, h, w]: rows is
// [H, h] and cols [W, w], giving [N, H, W]. Both are constants, so the
// gradient is exact (unlike the backend's Interpolate).
func Separable(x *Node, rows, cols [][]float64) *Node {
	d := x.Shape().Dimensions
	if len(d) != 3 || len(rows[0]) != d[1] || len(cols[0]) != d[2] {
		panic(fmt.Sprintf("nn: Separable: map %s does not fit %dx%d and %dx%d matrices",
			x.Shape(), len(rows), len(rows[0]), len(cols), len(cols[0])))
	}
	g := x.Graph()
	y := Einsum("nhw,Ww->nhW", x, constMatrix(g, cols, x.DType()))
	return Einsum("nhW,Hh->nHW", y, constMatrix(g, rows, x.DType()))
}

// Upsample resizes maps [N, h, w] to [N, H, W] bilinearly (half-pixel).
func Upsample(x *Node, H, W int) *Node {
	d := x.Shape().Dimensions
	return Separable(x, BilinearMatrix(d[1], H), BilinearMatrix(d[2], W))
}

// BoxMatrix is the [n, n] matrix of a (2r+1)-wide moving average whose
// window is clipped at the borders: row i averages positions i−r … i+r that
// exist.
func BoxMatrix(n, r int) [][]float64 {
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, n)
		lo, hi := max(i-r, 0), min(i+r, n-1)
		for j := lo; j <= hi; j++ {
			m[i][j] = 1 / float64(hi-lo+1)
		}
	}
	return m
}

// BoxPool averages features x [N, h, w, C] over (2r+1)×(2r+1) windows
// (BoxMatrix along each axis), channel by channel; r ≤ 0 returns x.
func BoxPool(x *Node, r int) *Node {
	if r <= 0 {
		return x
	}
	d := x.Shape().Dimensions
	g := x.Graph()
	y := Einsum("nhwc,Ww->nhWc", x, constMatrix(g, BoxMatrix(d[2], r), x.DType()))
	return Einsum("nhWc,Hh->nHWc", y, constMatrix(g, BoxMatrix(d[1], r), x.DType()))
}

// Blur smooths maps [N, H, W] with a Gaussian of standard deviation sigma.
func Blur(x *Node, sigma float64) *Node {
	d := x.Shape().Dimensions
	return Separable(x, GaussianMatrix(d[1], sigma), GaussianMatrix(d[2], sigma))
}

// SeparableGo writes W·M·Wᵀ for an h×h map M and an [n][h] matrix W into
// out (n×n), accumulating in float64: the Go side of the exported graph's
// separable MatMuls and of Separable (bilinear upsampling, box and Gaussian
// filters).
func SeparableGo(m []float32, h int, w [][]float64, out []float64) {
	n := len(w)
	tmp := make([]float64, h*n)
	for y := 0; y < h; y++ {
		for x := 0; x < n; x++ {
			var a float64
			for k, wk := range w[x] {
				if wk != 0 {
					a += wk * float64(m[y*h+k])
				}
			}
			tmp[y*n+x] = a
		}
	}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			var a float64
			for k, wk := range w[y] {
				if wk != 0 {
					a += wk * tmp[k*n+x]
				}
			}
			out[y*n+x] = a
		}
	}
}
