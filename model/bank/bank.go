// Package bank is the memory-bank head of Multi-AD: PatchCore-style patch
// embeddings of the frozen teacher's features, a memory bank of training
// normals subsampled by greedy coreset selection, and a brute-force
// nearest-neighbour reference of the distances that the exported ONNX graph
// (model/export) computes.
//
// The patch embedding is the reference recipe of shared/reference/peer: the
// stride-16 features are upsampled bilinearly (half-pixel centres,
// align_corners=False) to the stride-8 grid and concatenated after the
// stride-8 features; the result is averaged over 3×3 windows with zero
// padding counted (every window divides by 9). A patch's anomaly is its
// Euclidean distance to the nearest bank vector; the map of distances is
// upsampled bilinearly to the image and blurred like the student's map.
package bank

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/multiad/multiad/model/nn"
)

// Bank is a memory bank of patch vectors.
type Bank struct {
	// Size is the image side S the bank was built at; patches lie on the
	// stride-8 grid of (S/8)×(S/8).
	Size int
	// C8 and C16 are the channels of the stride-8 and stride-16 features;
	// a patch vector has D = C8 + C16 values, stride 8 first.
	C8, C16 int
	// Vectors holds the bank, [M][D] row-major.
	Vectors []float32
	// Radius is the coreset's covering radius: the largest distance, in the
	// space the coreset was selected in, from a training patch to its
	// nearest bank vector (0 when the bank holds every patch).
	Radius float64
	// Patches is the number of training patches the bank was selected from.
	Patches int
}

// D is the length of a patch vector.
func (b *Bank) D() int { return b.C8 + b.C16 }

// M is the number of bank vectors.
func (b *Bank) M() int {
	if b.D() == 0 {
		return 0
	}
	return len(b.Vectors) / b.D()
}

// Validate checks the bank's shape.
func (b *Bank) Validate() error {
	switch {
	case b.Size < 16 || b.Size%16 != 0:
		return fmt.Errorf("bank: image size %d is not a positive multiple of 16", b.Size)
	case b.C8 < 1 || b.C16 < 1:
		return fmt.Errorf("bank: channels %d + %d, want at least one at each stride", b.C8, b.C16)
	case len(b.Vectors) == 0 || len(b.Vectors)%b.D() != 0:
		return fmt.Errorf("bank: %d values are not a whole number of %d-value vectors", len(b.Vectors), b.D())
	}
	return nil
}

// ShapeError reports features whose size does not fit the image size.
type ShapeError struct {
	What       string // "stride-8 features", ...
	Got, Width int    // values given, and the map area they must divide into
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("bank: %s have %d values, not a whole number of %d-value maps", e.What, e.Got, e.Width)
}

// Channels returns the channel counts of stride-8 and stride-16 features
// (CHW, flattened) of an S×S image.
func Channels(f8, f16 []float32, S int) (c8, c16 int, err error) {
	h8, h16 := S/8, S/16
	if len(f8) == 0 || len(f8)%(h8*h8) != 0 {
		return 0, 0, &ShapeError{"stride-8 features", len(f8), h8 * h8}
	}
	if len(f16) == 0 || len(f16)%(h16*h16) != 0 {
		return 0, 0, &ShapeError{"stride-16 features", len(f16), h16 * h16}
	}
	return len(f8) / (h8 * h8), len(f16) / (h16 * h16), nil
}

// BoxMatrix is the [n, n] matrix of a 3-wide moving average with zero
// padding counted: row i is 1/3 at i−1, i and i+1 where they exist. Applied
// along both axes it is a 3×3 average that divides by 9 everywhere
// (PyTorch's avg_pool2d(3, 1, 1) with count_include_pad).
func BoxMatrix(n int) [][]float64 {
	m := make([][]float64, n)
	for i := range m {
		m[i] = make([]float64, n)
		for j := max(i-1, 0); j <= min(i+1, n-1); j++ {
			m[i][j] = 1.0 / 3
		}
	}
	return m
}

// Embed returns the patch vectors of one image from its stride-8 features
// f8 [C8, S/8, S/8] and stride-16 features f16 [C16, S/16, S/16] (CHW,
// flattened): [(S/8)²][C8+C16] row-major, patches in raster order.
func Embed(f8, f16 []float32, S int) ([]float32, error) {
	c8, c16, err := Channels(f8, f16, S)
	if err != nil {
		return nil, err
	}
	h8, h16 := S/8, S/16
	D, P := c8+c16, h8*h8
	up := nn.BilinearMatrix(h16, h8)
	box := BoxMatrix(h8)
	out := make([]float32, P*D)
	plane := make([]float64, P)
	for c := 0; c < D; c++ {
		if c < c8 {
			for i := range plane {
				plane[i] = float64(f8[c*P+i])
			}
		} else {
			m := f16[(c-c8)*h16*h16 : (c-c8+1)*h16*h16]
			nn.SeparableGo(m, h16, up, plane)
		}
		sm := make([]float32, P)
		for i, v := range plane {
			sm[i] = float32(v)
		}
		nn.SeparableGo(sm, h8, box, plane)
		for i, v := range plane {
			out[i*D+c] = float32(v)
		}
	}
	return out, nil
}

// Map turns the distances of one image's (S/8)² patches into its S×S
// anomaly map: bilinear upsampling (half-pixel centres) and a Gaussian blur
// of standard deviation sigma (nn.GaussianMatrix: reflect boundary; none
// when sigma ≤ 0), as the student's map.
func Map(dist []float32, S int, sigma float64) []float32 {
	h8 := S / 8
	up := make([]float64, S*S)
	nn.SeparableGo(dist, h8, nn.BilinearMatrix(h8, S), up)
	out := make([]float32, S*S)
	for i, v := range up {
		out[i] = float32(v)
	}
	if sigma <= 0 {
		return out
	}
	nn.SeparableGo(out, S, nn.GaussianMatrix(S, sigma), up)
	for i, v := range up {
		out[i] = float32(v)
	}
	return out
}

// Nearest returns, for each query vector of q ([n][D]), the Euclidean
// distance to its nearest vector of bank ([M][D]), by brute force:
// Σ (q − b)² accumulated directly (no ‖q‖² − 2q·b + ‖b‖² cancellation),
// threads goroutines (≤ 0: GOMAXPROCS). It is the reference for the
// distances of the exported graph.
func Nearest(bank []float32, q []float32, D, threads int) []float32 {
	n, M := len(q)/D, len(bank)/D
	out := make([]float32, n)
	parallel(n, threads, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			qi := q[i*D : (i+1)*D]
			best := float32(math.Inf(1))
			for j := 0; j < M; j++ {
				if d := sqDist(qi, bank[j*D:(j+1)*D], best); d < best {
					best = d
				}
			}
			out[i] = float32(math.Sqrt(float64(best)))
		}
	})
	return out
}

// sqDist is Σ (a − b)², stopping early (with a value ≥ limit) once the
// partial sum reaches limit.
func sqDist(a, b []float32, limit float32) float32 {
	var s0, s1, s2, s3 float32
	b = b[:len(a)]
	i := 0
	for ; i+16 <= len(a); i += 16 {
		for k := i; k < i+16; k += 4 {
			d0, d1, d2, d3 := a[k]-b[k], a[k+1]-b[k+1], a[k+2]-b[k+2], a[k+3]-b[k+3]
			s0 += d0 * d0
			s1 += d1 * d1
			s2 += d2 * d2
			s3 += d3 * d3
		}
		if s0+s1+s2+s3 >= limit {
			return s0 + s1 + s2 + s3
		}
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s0 += d * d
	}
	return s0 + s1 + s2 + s3
}

// parallel runs f over [0, n) split into contiguous chunks on threads
// goroutines (≤ 0: GOMAXPROCS).
func parallel(n, threads int, f func(lo, hi int)) {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	threads = max(1, min(threads, n))
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		lo, hi := t*n/threads, (t+1)*n/threads
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(lo, hi)
		}()
	}
	wg.Wait()
}

// CoresetOptions configure Coreset.
type CoresetOptions struct {
	// Proj is the dimension of the Gaussian random projection the distances
	// are computed in (PatchCore's trick to make selection affordable);
	// 0 or ≥ D selects in the original space.
	Proj int
	// Seed draws the projection and the first centre.
	Seed uint64
	// Threads is the number of goroutines (≤ 0: GOMAXPROCS).
	Threads int
	// Progress, if not nil, is called after every tenth of the selection.
	Progress func(chosen, n int)
}

// ErrEmpty is returned for a coreset of nothing.
var ErrEmpty = errors.New("bank: no vectors to select from")

// Coreset selects n of the vectors x ([N][D] row-major) by greedy k-center
// selection (PatchCore): starting from a random vector, it repeatedly adds
// the vector farthest from those already chosen, with distances in a
// Gaussian random projection to opt.Proj dimensions. It returns the chosen
// indices in the order chosen and the covering radius in the selection
// space: the largest distance from any vector to its nearest chosen one.
// The result depends only on x, n and opt.Seed. n ≥ N selects everything
// (radius 0).
func Coreset(x []float32, D, n int, opt CoresetOptions) (idx []int, radius float64, err error) {
	if D < 1 || len(x) == 0 || len(x)%D != 0 {
		return nil, 0, ErrEmpty
	}
	N := len(x) / D
	if n >= N {
		idx = make([]int, N)
		for i := range idx {
			idx[i] = i
		}
		return idx, 0, nil
	}
	if n < 1 {
		return nil, 0, fmt.Errorf("bank: coreset of %d vectors", n)
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x636f72657365742e))
	p, d := project(x, D, opt.Proj, rng, opt.Threads)
	// minD[i] is the squared distance from vector i to its nearest chosen
	// centre, near[i] that centre's position in idx. A new centre c cannot
	// come nearer to i when ‖c − near‖ ≥ 2·√minD[i] (triangle inequality),
	// so most vectors are skipped without computing their distance to c:
	// the selection is the plain greedy one, only faster.
	minD := make([]float32, N)
	near := make([]int32, N)
	for i := range minD {
		minD[i] = float32(math.Inf(1))
	}
	threads := opt.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	threads = max(1, min(threads, N/4096+1))
	type best struct {
		i int
		d float32
	}
	bests := make([]best, threads)
	next := rng.IntN(N)
	idx = make([]int, 0, n)
	cc := make([]float32, 0, n) // squared distances from the new centre to every centre, /4
	for {
		t := len(idx)
		idx = append(idx, next)
		c := p[next*d : (next+1)*d]
		cc = cc[:t+1]
		for j := 0; j < t; j++ {
			cc[j] = sqDist(c, p[idx[j]*d:(idx[j]+1)*d], float32(math.Inf(1))) / 4
		}
		cc[t] = 0
		var wg sync.WaitGroup
		for w := 0; w < threads; w++ {
			lo, hi := w*N/threads, (w+1)*N/threads
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := best{-1, -1}
				for i := lo; i < hi; i++ {
					if t == 0 || cc[near[i]] < minD[i] {
						if v := sqDist(p[i*d:(i+1)*d], c, minD[i]); v < minD[i] {
							minD[i], near[i] = v, int32(t)
						}
					}
					if minD[i] > b.d {
						b = best{i, minD[i]}
					}
				}
				bests[w] = b
			}()
		}
		wg.Wait()
		b := bests[0]
		for _, o := range bests[1:] {
			if o.d > b.d { // ties keep the lower index: chunks are in order
				b = o
			}
		}
		if len(idx) == n || b.d <= 0 { // b.d 0: every vector is a copy of a chosen one
			return idx, math.Sqrt(float64(max(b.d, 0))), nil
		}
		if opt.Progress != nil && len(idx)%max(n/10, 1) == 0 {
			opt.Progress(len(idx), n)
		}
		next = b.i
	}
}

// project returns x ([N][D]) multiplied by a D×k Gaussian matrix with
// entries N(0, 1/k), which preserves distances in expectation, and k; x
// itself (k = D) when k is 0 or ≥ D.
func project(x []float32, D, k int, rng *rand.Rand, threads int) ([]float32, int) {
	if k <= 0 || k >= D {
		return x, D
	}
	w := make([]float32, D*k)
	s := 1 / math.Sqrt(float64(k))
	for i := range w {
		w[i] = float32(rng.NormFloat64() * s)
	}
	N := len(x) / D
	out := make([]float32, N*k)
	parallel(N, threads, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o := out[i*k : (i+1)*k]
			for c, v := range x[i*D : (i+1)*D] {
				if v == 0 {
					continue
				}
				for j, wj := range w[c*k : (c+1)*k] {
					o[j] += v * wj
				}
			}
		}
	})
	return out, k
}

// Build embeds the stride-8 and stride-16 features of the training images
// (f8s[i], f16s[i]: CHW, flattened) and keeps n of their patches by Coreset.
func Build(f8s, f16s [][]float32, S, n int, opt CoresetOptions) (*Bank, error) {
	if len(f8s) == 0 || len(f8s) != len(f16s) {
		return nil, fmt.Errorf("bank: %d stride-8 and %d stride-16 feature maps, want the same number > 0", len(f8s), len(f16s))
	}
	c8, c16, err := Channels(f8s[0], f16s[0], S)
	if err != nil {
		return nil, err
	}
	D := c8 + c16
	all := make([]float32, 0, len(f8s)*(S/8)*(S/8)*D)
	for i := range f8s {
		if len(f8s[i]) != len(f8s[0]) || len(f16s[i]) != len(f16s[0]) {
			return nil, fmt.Errorf("bank: image %d has %d+%d feature values, image 0 %d+%d", i, len(f8s[i]), len(f16s[i]), len(f8s[0]), len(f16s[0]))
		}
		e, err := Embed(f8s[i], f16s[i], S)
		if err != nil {
			return nil, fmt.Errorf("bank: image %d: %w", i, err)
		}
		all = append(all, e...)
	}
	idx, r, err := Coreset(all, D, n, opt)
	if err != nil {
		return nil, err
	}
	return &Bank{Size: S, C8: c8, C16: c16, Vectors: Select(all, D, idx), Radius: r, Patches: len(all) / D}, nil
}

// Score returns the S×S anomaly map of one image from its stride-8 and
// stride-16 features, blurred with sigma, and its maximum: the Go reference
// of the exported graph's bank head.
func (b *Bank) Score(f8, f16 []float32, sigma float64, threads int) ([]float32, float64, error) {
	e, err := Embed(f8, f16, b.Size)
	if err != nil {
		return nil, 0, err
	}
	if len(e) != (b.Size/8)*(b.Size/8)*b.D() {
		return nil, 0, fmt.Errorf("bank: features of %d+%d channels, the bank has %d+%d", len(f8)/((b.Size/8)*(b.Size/8)), len(f16)/((b.Size/16)*(b.Size/16)), b.C8, b.C16)
	}
	m := Map(Nearest(b.Vectors, e, b.D(), threads), b.Size, sigma)
	s := math.Inf(-1)
	for _, v := range m {
		s = math.Max(s, float64(v))
	}
	return m, s, nil
}

// Select returns the rows idx of x ([N][D]) as a new [len(idx)][D] slice.
func Select(x []float32, D int, idx []int) []float32 {
	out := make([]float32, 0, len(idx)*D)
	for _, i := range idx {
		out = append(out, x[i*D:(i+1)*D]...)
	}
	return out
}
