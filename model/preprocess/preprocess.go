// Package preprocess turns a decoded pixels.Image into the model's input
// tensor: intensity normalisation per modality, resize to the model size,
// and grayscale replicated to three channels. Training and scoring both call
// Tensor, so the two always see identical inputs.
package preprocess

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/multiad/multiad/io/pixels"
)

// Normalisation modes.
const (
	// ModeAuto picks per image: Window for CT when a window is configured,
	// Percentile for other DICOM and NIfTI data, Range for plain pictures.
	ModeAuto = "auto"
	// ModeRange divides stored values by the type's maximum (8-bit as is:
	// v/255; 16-bit v/65535).
	ModeRange = "range"
	// ModePercentile maps the [Low, High] percentiles of the rescaled values
	// to [0, 1] and clips. It is invariant to a scaling of the values, so a
	// DICOM series stored as 16× a NIfTI volume normalises identically.
	ModePercentile = "percentile"
	// ModeWindow maps the window Center±Width/2 (rescaled units, e.g. HU) to [0, 1].
	ModeWindow = "window"
)

// Config describes preprocessing. It is stored in the model bundle.
type Config struct {
	// Size is the square model input size in pixels.
	Size int `json:"size"`
	// Mode is one of auto, range, percentile, window.
	Mode string `json:"mode"`
	// Low and High are the percentiles (0–100) used by ModePercentile.
	Low  float64 `json:"low_percentile"`
	High float64 `json:"high_percentile"`
	// WindowCenter and WindowWidth are used by ModeWindow (and by ModeAuto for CT when WindowWidth > 0).
	WindowCenter float64 `json:"window_center,omitempty"`
	WindowWidth  float64 `json:"window_width,omitempty"`
	// Resize is ResizeAntialias or ResizeBilinear; "" (bundles written
	// before the field existed) means ResizeBilinear.
	Resize string `json:"resize,omitempty"`
}

// Resize modes.
const (
	// ResizeBilinear is Resize: half-pixel bilinear, with an integer box
	// pre-filter only when shrinking by more than 2×.
	ResizeBilinear = "bilinear"
	// ResizeAntialias is ResizeAntialiased: when shrinking an axis, a
	// triangle filter whose support grows with the reduction (PIL's
	// Image.resize with BILINEAR); when enlarging, Resize's bilinear.
	ResizeAntialias = "antialias"
)

// Default returns the default configuration at the given size.
func Default(size int) Config {
	return Config{Size: size, Mode: ModeAuto, Low: 0.5, High: 99.5}
}

// ParseWindow parses a "center,width" window such as "40,400".
func ParseWindow(s string) (center, width float64, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 {
		return 0, 0, fmt.Errorf("preprocess: window %q: want center,width", s)
	}
	if _, err := fmt.Sscan(strings.TrimSpace(parts[0]), &center); err != nil {
		return 0, 0, fmt.Errorf("preprocess: window center %q: %v", parts[0], err)
	}
	if _, err := fmt.Sscan(strings.TrimSpace(parts[1]), &width); err != nil {
		return 0, 0, fmt.Errorf("preprocess: window width %q: %v", parts[1], err)
	}
	if width <= 0 {
		return 0, 0, fmt.Errorf("preprocess: window width %g must be positive", width)
	}
	return center, width, nil
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Size < 32 || c.Size%32 != 0 || c.Size > 4096 {
		return fmt.Errorf("preprocess: size %d must be a multiple of 32 in [32, 4096]", c.Size)
	}
	switch c.Mode {
	case ModeAuto, ModeRange:
	case ModePercentile:
		if !(c.Low >= 0 && c.Low < c.High && c.High <= 100) {
			return fmt.Errorf("preprocess: percentiles %g..%g must satisfy 0 <= low < high <= 100", c.Low, c.High)
		}
	case ModeWindow:
		if c.WindowWidth <= 0 {
			return fmt.Errorf("preprocess: window mode needs a positive window width")
		}
	default:
		return fmt.Errorf("preprocess: unknown mode %q", c.Mode)
	}
	switch c.Resize {
	case "", ResizeBilinear, ResizeAntialias:
	default:
		return fmt.Errorf("preprocess: unknown resize %q (want %s or %s)", c.Resize, ResizeAntialias, ResizeBilinear)
	}
	return nil
}

// modeFor resolves ModeAuto for one image.
func (c Config) modeFor(img *pixels.Image) string {
	if c.Mode != ModeAuto && c.Mode != "" {
		return c.Mode
	}
	switch img.Meta.Format {
	case "dicom", "nifti":
		if img.Meta.Modality == "CT" && c.WindowWidth > 0 {
			return ModeWindow
		}
		return ModePercentile
	}
	if img.DType == pixels.Float32 || img.DType == pixels.Float64 {
		return ModePercentile
	}
	return ModeRange
}

// Normalize returns the image's values mapped to [0, 1], one float32 per
// stored element (channels interleaved), and the mode used. MONOCHROME1
// images are inverted so that bright means dense in every image.
func Normalize(img *pixels.Image, c Config) ([]float32, string, error) {
	if err := img.Validate(); err != nil {
		return nil, "", err
	}
	mode := c.modeFor(img)
	n := img.Len()
	out := make([]float32, n)
	switch mode {
	case ModeRange:
		var max float64
		switch img.DType {
		case pixels.Uint8:
			max = 255
		case pixels.Uint16:
			max = 65535
			if b := img.Meta.BitsStored; b > 0 && b < 16 {
				max = float64(int(1)<<b - 1)
			}
		default:
			return nil, "", fmt.Errorf("preprocess: range mode needs uint8 or uint16 pixels, got %v", img.DType)
		}
		normalizeRange(img, max, out)
	case ModePercentile:
		if lo, hi, ok := countedPercentiles(img, c.Low, c.High); ok {
			normalizeInts(img, lo, hi, out)
			break
		}
		vals := img.Rescaled()
		lo, hi := percentiles(vals, c.Low, c.High)
		scale := hi - lo
		for i, v := range vals {
			out[i] = scaled(v, lo, scale)
		}
	case ModeWindow:
		vals := img.Rescaled()
		lo := c.WindowCenter - c.WindowWidth/2
		for i, v := range vals {
			out[i] = float32(clamp01((v - lo) / c.WindowWidth))
		}
	default:
		return nil, "", fmt.Errorf("preprocess: unknown mode %q", mode)
	}
	if img.Meta.Photometric == "MONOCHROME1" {
		for i := range out {
			out[i] = 1 - out[i]
		}
	}
	return out, mode, nil
}

// scaled is a percentile-mode value: v's place between lo and lo+scale,
// clamped to [0, 1]; 0 for NaN or an empty range.
func scaled(v, lo, scale float64) float32 {
	if scale <= 0 || math.IsNaN(v) {
		return 0
	}
	return float32(clamp01((v - lo) / scale))
}

// normalizeInts sets out[i] to scaled(img.Rescaled()[i], lo, hi-lo) for the
// integer images countedPercentiles counts, reading the stored values in
// place instead of making the rescaled copy (8-bit images look up their
// 256 possible values, computed by the same expression).
func normalizeInts(img *pixels.Image, lo, hi float64, out []float32) {
	scale := hi - lo
	d := img.Data
	switch img.DType {
	case pixels.Uint8, pixels.Int8:
		var lut [256]float32
		for b := range lut {
			v := float64(b)
			if img.DType == pixels.Int8 {
				v = float64(int8(b))
			}
			lut[b] = scaled(img.Rescale(v), lo, scale)
		}
		for i, b := range d[:len(out)] {
			out[i] = lut[b]
		}
	case pixels.Uint16:
		for i := range out {
			out[i] = scaled(img.Rescale(float64(binary.LittleEndian.Uint16(d[2*i:]))), lo, scale)
		}
	case pixels.Int16:
		for i := range out {
			out[i] = scaled(img.Rescale(float64(int16(binary.LittleEndian.Uint16(d[2*i:])))), lo, scale)
		}
	default:
		panic("preprocess: normalizeInts of " + img.DType.String())
	}
}

// normalizeRange sets out[i] to element i of img (8- or 16-bit unsigned)
// over max, clamped to [0, 1]. 8-bit elements look up their 256 possible
// values, computed by the same expression.
func normalizeRange(img *pixels.Image, max float64, out []float32) {
	switch img.DType {
	case pixels.Uint8:
		var lut [256]float32
		for v := range lut {
			lut[v] = float32(clamp01(float64(v) / max))
		}
		for i, v := range img.Data[:len(out)] {
			out[i] = lut[v]
		}
	case pixels.Uint16:
		d := img.Data[:2*len(out)]
		for i := range out {
			out[i] = float32(clamp01(float64(binary.LittleEndian.Uint16(d[2*i:])) / max))
		}
	}
}

// Tensor returns the model input for img: a [3, Size, Size] float32 tensor
// in [0, 1], channel-major (CHW). Gray images are replicated to 3 channels;
// images with 3 or 4 channels use the first three.
func Tensor(img *pixels.Image, c Config) ([]float32, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	img, norm, err := normalized(img, c)
	if err != nil {
		return nil, err
	}
	return tensorOf(img, norm, c), nil
}

// TensorView returns Tensor(img, c) and View(img, c), normalising img once:
// what scoring needs of an image whose heatmap it may draw.
func TensorView(img *pixels.Image, c Config) (tensor []float32, view []uint8, channels int, err error) {
	if err := c.Validate(); err != nil {
		return nil, nil, 0, err
	}
	img, norm, err := normalized(img, c)
	if err != nil {
		return nil, nil, 0, err
	}
	view, channels = viewOf(img, norm)
	return tensorOf(img, norm, c), view, channels, nil
}

// normalized returns img, converted to RGB when it is YBR, and its
// normalised values (Normalize). It refuses images with other than 1, 3 or
// 4 channels.
func normalized(img *pixels.Image, c Config) (*pixels.Image, []float32, error) {
	if strings.HasPrefix(img.Meta.Photometric, "YBR") {
		rgb, err := pixels.YBRToRGB(img)
		if err != nil {
			return nil, nil, fmt.Errorf("preprocess: %w", err)
		}
		img = rgb
	}
	norm, _, err := Normalize(img, c)
	if err != nil {
		return nil, nil, err
	}
	if ch := img.Channels; ch != 1 && ch != 3 && ch != 4 {
		return nil, nil, fmt.Errorf("preprocess: %d channels not supported (want 1, 3 or 4)", ch)
	}
	return img, norm, nil
}

// tensorOf is Tensor of img, whose normalised values are norm.
func tensorOf(img *pixels.Image, norm []float32, c Config) []float32 {
	ch := img.Channels
	s := c.Size
	out := make([]float32, 3*s*s)
	plane := make([]float32, img.Rows*img.Cols)
	for k := 0; k < 3; k++ {
		src := k
		if ch == 1 {
			src = 0
		}
		if ch == 1 && k > 0 {
			copy(out[k*s*s:(k+1)*s*s], out[:s*s])
			continue
		}
		for i := range plane {
			plane[i] = norm[i*ch+src]
		}
		if c.Resize == ResizeAntialias {
			ResizeAntialiased(plane, img.Rows, img.Cols, out[k*s*s:(k+1)*s*s], s, s)
		} else {
			Resize(plane, img.Rows, img.Cols, out[k*s*s:(k+1)*s*s], s, s)
		}
	}
	return out
}

// Resize resamples a row-major plane of h×w to oh×ow bilinearly with
// half-pixel centres (align_corners=False), averaging over the source
// footprint when shrinking by more than 2× (area pre-filter), and writes
// into dst.
func Resize(src []float32, h, w int, dst []float32, oh, ow int) {
	if h == oh && w == ow && copyFinite(dst, src[:h*w]) {
		return
	}
	resize(src, h, w, dst, oh, ow)
}

// copyFinite copies src into dst and reports true when src holds no NaN,
// infinity or -0; it copies nothing and reports false otherwise. Resizing
// to the same size weighs each pixel by 1 and its neighbour by 0, which
// gives the pixel back exactly unless the neighbour is NaN or infinite
// (0 × ±Inf is NaN) or the pixel is -0 (-0 + 0 is +0).
func copyFinite(dst, src []float32) bool {
	for _, v := range src {
		if v-v != 0 || math.Float32bits(v) == 1<<31 { // NaN, ±Inf or -0
			return false
		}
	}
	copy(dst, src)
	return true
}

// resize is Resize without the same-size copy.
func resize(src []float32, h, w int, dst []float32, oh, ow int) {
	// Box pre-filter for large reductions so that thin defects are not
	// aliased away: reduce by an integer factor first.
	fy, fx := h/(2*oh), w/(2*ow)
	if fy > 1 || fx > 1 {
		fy, fx = max(fy, 1), max(fx, 1)
		nh, nw := h/fy, w/fx
		red := make([]float32, nh*nw)
		inv := 1 / float32(fy*fx)
		for y := 0; y < nh; y++ {
			for x := 0; x < nw; x++ {
				var sum float32
				for dy := 0; dy < fy; dy++ {
					row := src[(y*fy+dy)*w+x*fx:]
					for dx := 0; dx < fx; dx++ {
						sum += row[dx]
					}
				}
				red[y*nw+x] = sum * inv
			}
		}
		src, h, w = red, nh, nw
	}
	ys := axis(h, oh)
	xs := axis(w, ow)
	for oy, ay := range ys {
		r0 := src[ay.i0*w:]
		r1 := src[ay.i1*w:]
		d := dst[oy*ow:]
		for ox, ax := range xs {
			top := r0[ax.i0]*(1-ax.f) + r0[ax.i1]*ax.f
			bot := r1[ax.i0]*(1-ax.f) + r1[ax.i1]*ax.f
			d[ox] = top*(1-ay.f) + bot*ay.f
		}
	}
}

// ResizeAntialiased resamples a row-major plane of h×w to oh×ow and
// writes into dst. An axis that shrinks is filtered with a triangle
// (bilinear) kernel whose support is scaled by the reduction factor,
// centred on each output pixel's half-pixel centre and normalised over the
// source pixels it covers, as PIL's Image.resize(..., BILINEAR) does; an
// axis that keeps or grows its size is plain half-pixel bilinear, and when
// no axis shrinks the result is Resize's, bit for bit.
func ResizeAntialiased(src []float32, h, w int, dst []float32, oh, ow int) {
	if h <= oh && w <= ow {
		Resize(src, h, w, dst, oh, ow)
		return
	}
	xs, ys := triangleAxis(w, ow), triangleAxis(h, oh)
	// Horizontal pass over the rows the vertical pass reads, then vertical.
	tmp := make([]float32, h*ow)
	for y := 0; y < h; y++ {
		row, t := src[y*w:(y+1)*w], tmp[y*ow:(y+1)*ow]
		for ox, k := range xs {
			var sum float32
			for j, wt := range k.w {
				sum += row[k.start+j] * wt
			}
			t[ox] = sum
		}
	}
	for oy, k := range ys {
		d := dst[oy*ow : (oy+1)*ow]
		clear(d)
		for j, wt := range k.w {
			r := tmp[(k.start+j)*ow : (k.start+j+1)*ow]
			for ox, v := range r {
				d[ox] += v * wt
			}
		}
	}
}

// kernel is one output sample's weights over source samples start, start+1, ….
type kernel struct {
	start int
	w     []float32
}

// triangleAxis computes the weights from n source to m target samples:
// PIL's resampling coefficients for its bilinear filter (support 1, scaled
// by n/m when n > m), computed in float64 and normalised to sum 1.
func triangleAxis(n, m int) []kernel {
	ks := make([]kernel, m)
	scale := float64(n) / float64(m)
	fs := max(scale, 1)
	support := fs // the triangle's support is 1 source pixel, scaled
	for i := range ks {
		center := (float64(i) + 0.5) * scale
		lo := max(int(center-support+0.5), 0) // int truncates toward zero, as PIL's C cast
		hi := min(int(center+support+0.5), n)
		w := make([]float64, 0, hi-lo)
		var sum float64
		for x := lo; x < hi; x++ {
			v := 1 - math.Abs((float64(x)-center+0.5)/fs)
			if v < 0 {
				v = 0
			}
			w = append(w, v)
			sum += v
		}
		k := kernel{start: lo, w: make([]float32, len(w))}
		for j, v := range w {
			if sum != 0 {
				v /= sum
			}
			k.w[j] = float32(v)
		}
		ks[i] = k
	}
	return ks
}

type tap struct {
	i0, i1 int
	f      float32
}

// axis computes half-pixel bilinear taps from n source to m target samples.
func axis(n, m int) []tap {
	t := make([]tap, m)
	scale := float64(n) / float64(m)
	for i := range t {
		x := (float64(i)+0.5)*scale - 0.5
		if x < 0 {
			x = 0
		}
		i0 := int(math.Floor(x))
		if i0 > n-1 {
			i0 = n - 1
		}
		i1 := min(i0+1, n-1)
		t[i] = tap{i0, i1, float32(x - float64(i0))}
	}
	return t
}

// percentiles returns the lo-th and hi-th percentiles (0–100) of vs with
// linear interpolation between order statistics (NumPy's default), ignoring
// NaNs. It selects the order statistics in linear time instead of sorting.
func percentiles(vs []float64, lo, hi float64) (float64, float64) {
	s := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return 0, 0
	}
	kth := func(k int) float64 { return nthElement(s, k) }
	// After kth(i), s[i+1:] holds the values ≥ s[i]: the next is their least.
	next := func(i int) float64 { return slices.Min(s[i+1:]) }
	return percentile(len(s), lo, kth, next), percentile(len(s), hi, kth, next)
}

// percentile returns the p-th percentile (0–100) of n values with linear
// interpolation between order statistics (NumPy's default): kth(k) returns
// the k-th smallest value (from 0), and next(i), called right after
// kth(i), the (i+1)-th.
func percentile(n int, p float64, kth, next func(int) float64) float64 {
	pos := p / 100 * float64(n-1)
	i := int(math.Floor(pos))
	if i >= n-1 {
		return kth(n - 1)
	}
	a := kth(i)
	f := pos - float64(i)
	if f == 0 {
		return a
	}
	return a + (next(i)-a)*f
}

// countedPercentiles returns what percentiles returns for img.Rescaled(),
// for images of integers of at most 16 bits with a finite rescale, and
// false for others. It counts the stored values instead of selecting among
// the rescaled ones: a rescale is monotonic (increasing for a positive
// slope, decreasing for a negative one), so the k-th smallest rescaled
// value is the rescale of the k-th smallest stored value (of the k-th
// largest for a negative slope), and it rescales only those.
func countedPercentiles(img *pixels.Image, lo, hi float64) (float64, float64, bool) {
	switch img.DType {
	case pixels.Uint8, pixels.Int8, pixels.Uint16, pixels.Int16:
	default:
		return 0, 0, false
	}
	slope, icpt := img.Slope, img.Intercept
	if math.IsNaN(slope) || math.IsInf(slope, 0) || math.IsNaN(icpt) || math.IsInf(icpt, 0) {
		return 0, 0, false
	}
	n := img.Len()
	if n == 0 {
		return 0, 0, true
	}
	// below[b] counts the stored values under base+b, for b in [0, bins].
	var below []int
	var base int
	switch d := img.Data; img.DType {
	case pixels.Uint8:
		below, base = count8[uint8](d[:n])
	case pixels.Int8:
		below, base = count8[int8](d[:n])
	case pixels.Uint16:
		below, base = count16[uint16](d, n)
	default: // Int16
		below, base = count16[int16](d, n)
	}
	bins := len(below) - 1
	for v := 1; v <= bins; v++ {
		below[v] += below[v-1]
	}
	// kth returns the k-th smallest rescaled value (from 0).
	kth := func(k int) float64 {
		if slope < 0 {
			k = n - 1 - k
		}
		b := sort.Search(bins, func(b int) bool { return below[b+1] > k })
		return img.Rescale(float64(base + b))
	}
	next := func(i int) float64 { return kth(i + 1) }
	return percentile(n, lo, kth, next), percentile(n, hi, kth, next), true
}

// count8 counts the 8-bit stored values d (T) over their 256 possible
// values, from the smallest, base: below[b] is the number under base+b, for
// b in [0, 256].
func count8[T uint8 | int8](d []byte) (below []int, base int) {
	var x T
	x-- // 255 for uint8, -1 for int8
	if x < 0 {
		base = -128
	}
	below = make([]int, 257)
	for _, b := range d {
		below[int(T(b))-base+1]++
	}
	return below, base
}

// count16 counts the n 16-bit stored values of d (little-endian T) over
// the values they span, from the smallest, base (12-bit MR spans a
// sixteenth of the 65,536): below[b] is the number under base+b, for b in
// [0, bins].
func count16[T uint16 | int16](d []byte, n int) (below []int, base int) {
	lo, hi := math.MaxInt, math.MinInt
	for i := range n {
		v := int(T(binary.LittleEndian.Uint16(d[2*i:])))
		lo, hi = min(lo, v), max(hi, v)
	}
	below = make([]int, hi-lo+2)
	for i := range n {
		below[int(T(binary.LittleEndian.Uint16(d[2*i:])))-lo+1]++
	}
	return below, lo
}

// nthElement reorders s so that s[k] is the value a sort would put there,
// with no larger value before it and no smaller one after, and returns it
// (quickselect, median-of-three pivots, Hoare partitioning, which splits
// runs of equal values evenly).
func nthElement(s []float64, k int) float64 {
	l, r := 0, len(s)-1
	for r > l {
		m := l + (r-l)/2
		if s[m] < s[l] {
			s[m], s[l] = s[l], s[m]
		}
		if s[r] < s[l] {
			s[r], s[l] = s[l], s[r]
		}
		if s[r] < s[m] {
			s[r], s[m] = s[m], s[r]
		}
		pivot := s[m]
		i, j := l, r
		for i <= j {
			for s[i] < pivot {
				i++
			}
			for s[j] > pivot {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			r = j
		case k >= i:
			l = i
		default:
			return s[k] // j < k < i: s[k] equals the pivot
		}
	}
	return s[k]
}

func clamp01(v float64) float64 {
	if v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

// View returns img for display at its own size, normalised as Tensor
// normalises it (same mode, MONOCHROME1 inverted, YBR as RGB): 8-bit
// values, row-major, gray (channels 1) or RGB interleaved (channels 3).
func View(img *pixels.Image, c Config) (pix []uint8, channels int, err error) {
	img, norm, err := normalized(img, c)
	if err != nil {
		return nil, 0, err
	}
	pix, channels = viewOf(img, norm)
	return pix, channels, nil
}

// viewOf is View of img, whose normalised values are norm.
func viewOf(img *pixels.Image, norm []float32) (pix []uint8, channels int) {
	ch := img.Channels
	channels = 1
	if ch > 1 {
		channels = 3
	}
	n := img.Rows * img.Cols
	pix = make([]uint8, n*channels)
	if ch == channels {
		for i, v := range norm[:len(pix)] {
			pix[i] = uint8(v*255 + 0.5)
		}
		return pix, channels
	}
	for i := 0; i < n; i++ {
		for k := 0; k < channels; k++ {
			pix[i*channels+k] = uint8(norm[i*ch+k]*255 + 0.5)
		}
	}
	return pix, channels
}
