package preprocess

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/multiad/multiad/io/pixels"
)

func gray16(rows, cols int, f func(r, c int) float64) *pixels.Image {
	m := pixels.New(rows, cols, 1, pixels.Uint16)
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			m.Set(r*cols+c, f(r, c))
		}
	}
	m.Meta.Format = "dicom"
	m.Meta.Modality = "MR"
	return m
}

func TestPercentileScaleInvariant(t *testing.T) {
	// A DICOM series stored as 16× its NIfTI volume must give identical tensors.
	f := func(r, c int) float64 { return float64((r*37 + c*11) % 251) }
	a := gray16(70, 90, f)
	b := gray16(70, 90, func(r, c int) float64 { return 16 * f(r, c) })
	b.Meta.Format = "nifti"
	ta, err := Tensor(a, Default(64))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Tensor(b, Default(64))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ta {
		if ta[i] != tb[i] {
			t.Fatalf("element %d: %v vs %v", i, ta[i], tb[i])
		}
	}
}

func TestModes(t *testing.T) {
	u8 := pixels.New(1, 4, 1, pixels.Uint8)
	for i, v := range []float64{0, 51, 204, 255} {
		u8.Set(i, v)
	}
	ct := pixels.New(1, 4, 1, pixels.Int16)
	for i, v := range []float64{-1000, -160, 40, 240} {
		ct.Set(i, v+1024)
	}
	ct.Intercept = -1024
	ct.Slope = 1
	ct.Meta = pixels.Meta{Format: "dicom", Modality: "CT"}
	mono1 := pixels.New(1, 2, 1, pixels.Uint8)
	mono1.Set(1, 255)
	mono1.Meta.Photometric = "MONOCHROME1"
	cases := []struct {
		name string
		img  *pixels.Image
		cfg  Config
		mode string
		want []float32
	}{
		{"uint8 range", u8, Default(32), ModeRange, []float32{0, 0.2, 0.8, 1}},
		{"ct window", ct, Config{Size: 32, Mode: ModeAuto, WindowCenter: 40, WindowWidth: 400}, ModeWindow, []float32{0, 0, 0.5, 1}},
		{"ct percentile", ct, Config{Size: 32, Mode: ModePercentile, Low: 0, High: 100}, ModePercentile, []float32{0, 840.0 / 1240, 1040.0 / 1240, 1}},
		{"monochrome1", mono1, Default(32), ModeRange, []float32{1, 0}},
	}
	for _, c := range cases {
		got, mode, err := Normalize(c.img, c.cfg)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if mode != c.mode {
			t.Errorf("%s: mode %s, want %s", c.name, mode, c.mode)
		}
		for i := range c.want {
			if math.Abs(float64(got[i]-c.want[i])) > 1e-6 {
				t.Errorf("%s: [%d] = %v, want %v", c.name, i, got[i], c.want[i])
			}
		}
	}
}

// Bilinear half-pixel resampling reproduces a linear ramp exactly away from
// the clamped border: out(y) = ramp(src coordinate of y).
func TestResizeRamp(t *testing.T) {
	for _, tc := range []struct{ h, oh int }{{10, 32}, {40, 64}, {64, 32}, {37, 64}} {
		src := make([]float32, tc.h*tc.h)
		for y := 0; y < tc.h; y++ {
			for x := 0; x < tc.h; x++ {
				src[y*tc.h+x] = float32(3*x + 7*y)
			}
		}
		dst := make([]float32, tc.oh*tc.oh)
		Resize(src, tc.h, tc.h, dst, tc.oh, tc.oh)
		scale := float64(tc.h) / float64(tc.oh)
		for y := 0; y < tc.oh; y++ {
			for x := 0; x < tc.oh; x++ {
				sx := (float64(x)+0.5)*scale - 0.5
				sy := (float64(y)+0.5)*scale - 0.5
				if sx < 0 || sy < 0 || sx > float64(tc.h-1) || sy > float64(tc.h-1) {
					continue
				}
				want := 3*sx + 7*sy
				if got := float64(dst[y*tc.oh+x]); math.Abs(got-want) > 1e-3 {
					t.Fatalf("%d->%d at (%d,%d): %v want %v", tc.h, tc.oh, y, x, got, want)
				}
			}
		}
	}
}

func TestTensorGrayToRGB(t *testing.T) {
	img := gray16(40, 50, func(r, c int) float64 { return float64(r + c) })
	ten, err := Tensor(img, Default(32))
	if err != nil {
		t.Fatal(err)
	}
	if len(ten) != 3*32*32 {
		t.Fatalf("len %d", len(ten))
	}
	for i := 0; i < 32*32; i++ {
		if ten[i] != ten[32*32+i] || ten[i] != ten[2*32*32+i] {
			t.Fatalf("channels differ at %d", i)
		}
	}
}

func TestBadInput(t *testing.T) {
	img := gray16(4, 4, func(r, c int) float64 { return 1 })
	for _, cfg := range []Config{{Size: 30, Mode: ModeAuto}, {Size: 32, Mode: "nope"}, {Size: 32, Mode: ModeWindow}} {
		if _, err := Tensor(img, cfg); err == nil {
			t.Errorf("config %+v: no error", cfg)
		}
	}
	bad := &pixels.Image{Rows: 2, Cols: 2, Channels: 1, DType: pixels.Uint8, Data: []byte{1}}
	if _, err := Tensor(bad, Default(32)); err == nil {
		t.Error("short data: no error")
	}
	if _, _, err := ParseWindow("40"); err == nil {
		t.Error("ParseWindow(40): no error")
	}
}

// TestPercentilesSelect compares the linear-time selection with percentiles
// read off a sorted copy, on random data with many ties and NaNs.
func TestPercentilesSelect(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ref := func(vs []float64, p float64) float64 {
		var s []float64
		for _, v := range vs {
			if !math.IsNaN(v) {
				s = append(s, v)
			}
		}
		sort.Float64s(s)
		pos := p / 100 * float64(len(s)-1)
		i := int(math.Floor(pos))
		if i >= len(s)-1 {
			return s[len(s)-1]
		}
		return s[i] + (s[i+1]-s[i])*(pos-float64(i))
	}
	for trial := range 400 {
		n := 1 + r.IntN(300)
		levels := 1 + r.IntN(n+2) // few levels: many ties
		vs := make([]float64, n)
		for i := range vs {
			vs[i] = float64(r.IntN(levels)) * 0.5
			if r.IntN(20) == 0 {
				vs[i] = math.NaN()
			}
		}
		vs[r.IntN(n)] = 1 // at least one number
		lo, hi := r.Float64()*50, 50+r.Float64()*50
		if trial%7 == 0 {
			lo, hi = 0, 100
		}
		gl, gh := percentiles(vs, lo, hi)
		wl, wh := ref(vs, lo), ref(vs, hi)
		if math.Abs(gl-wl) > 1e-12 || math.Abs(gh-wh) > 1e-12 {
			t.Fatalf("trial %d (n %d, %d levels): percentiles(%g, %g) = %g, %g; sorted %g, %g", trial, n, levels, lo, hi, gl, gh, wl, wh)
		}
	}
}

// TestCountedPercentiles checks that counting the stored values gives
// exactly what selecting among the rescaled ones does, for each integer
// type, positive, negative, zero and fractional slopes, offsets, and
// images of one value, few values and the type's extremes.
func TestCountedPercentiles(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	types := []struct {
		dt       pixels.DType
		min, max int
	}{{pixels.Uint8, 0, 255}, {pixels.Int8, -128, 127}, {pixels.Uint16, 0, 65535}, {pixels.Int16, -32768, 32767}}
	slopes := []float64{0, 1, 2.5, -1, -0.37, 1e-3, 0.1}
	intercepts := []float64{0, -1024, 3.3, 1e6}
	for trial := range 600 {
		ty := types[trial%len(types)]
		n := 1 + r.IntN(400)
		ch := 1 + 2*(trial%2) // 1 or 3 channels
		m := pixels.New(1, n, ch, ty.dt)
		levels := 1 + r.IntN(n*ch+1)
		base := ty.min + r.IntN(ty.max-ty.min+1)
		for i := range m.Len() {
			v := base + r.IntN(levels)
			if r.IntN(30) == 0 {
				v = []int{ty.min, ty.max}[r.IntN(2)]
			}
			m.Set(i, float64(min(max(v, ty.min), ty.max)))
		}
		m.Slope, m.Intercept = slopes[r.IntN(len(slopes))], intercepts[r.IntN(len(intercepts))]
		lo, hi := r.Float64()*50, 50+r.Float64()*50
		switch trial % 5 {
		case 0:
			lo, hi = 0, 100
		case 1:
			lo, hi = 1, 99
		}
		gl, gh, ok := countedPercentiles(m, lo, hi)
		wl, wh := percentiles(m.Rescaled(), lo, hi)
		if !ok || gl != wl || gh != wh {
			t.Fatalf("trial %d (%v, %d values, slope %g, intercept %g): counted percentiles(%g, %g) = %g, %g (ok %v); selected %g, %g",
				trial, ty.dt, m.Len(), m.Slope, m.Intercept, lo, hi, gl, gh, ok, wl, wh)
		}
	}
	for _, m := range []*pixels.Image{pixels.New(2, 2, 1, pixels.Float32), pixels.New(2, 2, 1, pixels.Uint32)} {
		if _, _, ok := countedPercentiles(m, 1, 99); ok {
			t.Errorf("%v: counted, want the selection", m.DType)
		}
	}
	m := pixels.New(2, 2, 1, pixels.Uint16)
	m.Slope = math.NaN()
	if _, _, ok := countedPercentiles(m, 1, 99); ok {
		t.Error("a NaN slope was counted, want the selection")
	}
}

// BenchmarkPercentiles compares the two ways on a 256x256 16-bit slice.
func BenchmarkPercentiles(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	m := gray16(256, 256, func(int, int) float64 { return float64(r.IntN(4096)) })
	b.Run("counted", func(b *testing.B) {
		for b.Loop() {
			countedPercentiles(m, 1, 99)
		}
	})
	b.Run("selected", func(b *testing.B) {
		for b.Loop() {
			percentiles(m.Rescaled(), 1, 99)
		}
	})
}

// TestRangeAndViewPaths checks Normalize's range mode and View against
// the element-by-element rule (pixels.Image.At over the type's maximum,
// then round(v*255)) with ==, for every 8-bit value, random 16-bit values
// with and without BitsStored, 1, 3 and 4 channels, and MONOCHROME1.
func TestRangeAndViewPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var imgs []*pixels.Image
	for _, ch := range []int{1, 3, 4} {
		u8 := pixels.New(16, 16, ch, pixels.Uint8)
		for i := range u8.Len() {
			u8.Set(i, float64(i%256))
		}
		imgs = append(imgs, u8)
		for _, bits := range []int{0, 12} {
			u16 := pixels.New(9, 7, ch, pixels.Uint16)
			for i := range u16.Len() {
				u16.Set(i, float64(rng.IntN(65536)))
			}
			u16.Meta.BitsStored = bits
			imgs = append(imgs, u16)
		}
	}
	mono1 := pixels.New(16, 16, 1, pixels.Uint8)
	for i := range mono1.Len() {
		mono1.Set(i, float64(255-i%256))
	}
	mono1.Meta.Photometric = "MONOCHROME1"
	imgs = append(imgs, mono1)
	cfg := Default(32)
	for k, img := range imgs {
		max := 255.0
		if img.DType == pixels.Uint16 {
			max = 65535
			if b := img.Meta.BitsStored; b > 0 {
				max = float64(int(1)<<b - 1)
			}
		}
		norm, mode, err := Normalize(img, cfg)
		if err != nil || mode != ModeRange {
			t.Fatalf("image %d: mode %s, %v", k, mode, err)
		}
		want := make([]float32, img.Len())
		for i := range want {
			want[i] = float32(clamp01(img.At(i) / max))
			if img.Meta.Photometric == "MONOCHROME1" {
				want[i] = 1 - want[i]
			}
			if norm[i] != want[i] {
				t.Fatalf("image %d (%v, %d channels): element %d is %v, want %v", k, img.DType, img.Channels, i, norm[i], want[i])
			}
		}
		view, channels, err := View(img, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if want := min(img.Channels, 3); channels != want {
			t.Fatalf("image %d: view has %d channels, want %d", k, channels, want)
		}
		for i := range img.Rows * img.Cols {
			for c := range channels {
				if got, w := view[i*channels+c], uint8(want[i*img.Channels+c]*255+0.5); got != w {
					t.Fatalf("image %d: view pixel %d channel %d is %d, want %d", k, i, c, got, w)
				}
			}
		}
	}
}

// BenchmarkView is the heatmap's view of a 256×256 RGB 8-bit image and of
// a 16-bit gray slice (range mode).
func BenchmarkView(b *testing.B) {
	rgb := pixels.New(256, 256, 3, pixels.Uint8)
	gray := pixels.New(256, 256, 1, pixels.Uint16)
	for i := range rgb.Len() {
		rgb.Set(i, float64(i*7%256))
	}
	for i := range gray.Len() {
		gray.Set(i, float64(i*13%4096))
	}
	gray.Meta.BitsStored = 12
	for _, c := range []struct {
		name string
		img  *pixels.Image
	}{{"rgb8", rgb}, {"gray16", gray}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := View(c.img, Default(256)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestTensorView checks that TensorView returns what Tensor and View
// return separately, to the bit, for gray 16-bit slices in percentile
// mode, MONOCHROME1, 8-bit RGB, RGBA, YBR and a non-square image; and that
// it fails where they fail.
func TestTensorView(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := func(rows, cols, ch int, dt pixels.DType) *pixels.Image {
		m := pixels.New(rows, cols, ch, dt)
		for i := range m.Len() {
			m.Set(i, float64(rng.IntN(4096)%256))
		}
		return m
	}
	slice := gray16(70, 90, func(r, c int) float64 { return float64((r*131 + c*17) % 3000) })
	mono1 := gray16(64, 64, func(r, c int) float64 { return float64(r * c) })
	mono1.Meta.Photometric = "MONOCHROME1"
	ybr := random(40, 48, 3, pixels.Uint8)
	ybr.Meta.Photometric = "YBR_FULL"
	imgs := []*pixels.Image{slice, mono1, random(64, 64, 3, pixels.Uint8), random(33, 65, 4, pixels.Uint8), ybr, random(300, 20, 1, pixels.Uint16)}
	for k, img := range imgs {
		other := Default(64)
		other.Resize = ResizeBilinear
		if img.DType == pixels.Uint8 {
			other.Mode = ModePercentile
		}
		for _, cfg := range []Config{Default(32), other} {
			tensor, view, channels, err := TensorView(img, cfg)
			if err != nil {
				t.Fatalf("image %d: %v", k, err)
			}
			wantT, err := Tensor(img, cfg)
			if err != nil {
				t.Fatal(err)
			}
			wantV, wantCh, err := View(img, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if channels != wantCh || len(view) != len(wantV) || len(tensor) != len(wantT) {
				t.Fatalf("image %d: %d channels, %d view bytes, %d tensor values; want %d, %d, %d", k, channels, len(view), len(tensor), wantCh, len(wantV), len(wantT))
			}
			for i := range wantT {
				if math.Float32bits(tensor[i]) != math.Float32bits(wantT[i]) {
					t.Fatalf("image %d: tensor[%d] = %v, Tensor's %v", k, i, tensor[i], wantT[i])
				}
			}
			for i := range wantV {
				if view[i] != wantV[i] {
					t.Fatalf("image %d: view[%d] = %d, View's %d", k, i, view[i], wantV[i])
				}
			}
		}
	}
	two := random(4, 4, 2, pixels.Uint8)
	bad := &pixels.Image{Rows: 2, Cols: 2, Channels: 1, DType: pixels.Uint8, Data: []byte{1}}
	for _, c := range []struct {
		img *pixels.Image
		cfg Config
	}{{two, Default(32)}, {bad, Default(32)}, {slice, Config{Size: 30}}} {
		if _, _, _, err := TensorView(c.img, c.cfg); err == nil {
			t.Errorf("%d×%d×%d image, config %+v: no error", c.img.Rows, c.img.Cols, c.img.Channels, c.cfg)
		}
	}
}

// BenchmarkTensorView is scoring's preprocessing of a 256×256 16-bit MR
// slice (percentile mode) that keeps its view: Tensor and View, each
// normalising, against TensorView, normalising once.
func BenchmarkTensorView(b *testing.B) {
	img := gray16(256, 256, func(r, c int) float64 { return float64((r*131 + c*17) % 3000) })
	cfg := Default(256)
	b.Run("separate", func(b *testing.B) {
		for b.Loop() {
			if _, err := Tensor(img, cfg); err != nil {
				b.Fatal(err)
			}
			if _, _, err := View(img, cfg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("together", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, err := TensorView(img, cfg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPercentileNormalizeInts checks percentile mode on integer images,
// which reads the stored values in place, against the rescaled copy it
// replaced: (rescaled - lo) / (hi - lo), clamped, from the percentiles of
// img.Rescaled(), to the bit, for each integer type and rescale.
func TestPercentileNormalizeInts(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	types := []struct {
		dt       pixels.DType
		min, max int
	}{{pixels.Uint8, 0, 255}, {pixels.Int8, -128, 127}, {pixels.Uint16, 0, 65535}, {pixels.Int16, -32768, 32767}}
	cfg := Default(32)
	cfg.Mode = ModePercentile
	for trial := range 200 {
		ty := types[trial%len(types)]
		m := pixels.New(1+r.IntN(20), 1+r.IntN(20), 1, ty.dt)
		base, levels := ty.min+r.IntN(ty.max-ty.min+1), 1+r.IntN(3000)
		for i := range m.Len() {
			m.Set(i, float64(min(base+r.IntN(levels), ty.max)))
		}
		m.Slope, m.Intercept = []float64{0, 1, -2, 0.25}[trial%4], []float64{0, -1024, 7.5}[r.IntN(3)]
		got, _, err := Normalize(m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		vals := m.Rescaled()
		lo, hi := percentiles(vals, cfg.Low, cfg.High)
		for i, v := range vals {
			want := float32(0)
			if hi > lo {
				want = float32(clamp01((v - lo) / (hi - lo)))
			}
			if math.Float32bits(got[i]) != math.Float32bits(want) {
				t.Fatalf("trial %d (%v, slope %g, intercept %g): element %d is %v, want %v", trial, ty.dt, m.Slope, m.Intercept, i, got[i], want)
			}
		}
	}
}

// TestResizeSameSize checks Resize's copy at the same size against the
// bilinear arithmetic it skips (resize), to the bit, and that a plane with
// a NaN, an infinity or a -0 still goes through that arithmetic.
func TestResizeSameSize(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, sz := range [][2]int{{1, 1}, {7, 5}, {64, 64}, {3, 200}} {
		h, w := sz[0], sz[1]
		src := make([]float32, h*w)
		for i := range src {
			src[i] = r.Float32()
			if i%17 == 0 {
				src[i] = float32(i % 2) // exact 0s and 1s
			}
		}
		got, want := make([]float32, h*w), make([]float32, h*w)
		Resize(src, h, w, got, h, w)
		resize(src, h, w, want, h, w)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) || got[i] != src[i] {
				t.Fatalf("%d×%d: element %d is %v, the bilinear arithmetic gives %v, the source %v", h, w, i, got[i], want[i], src[i])
			}
		}
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Copysign(0, -1))} {
			src[len(src)/2] = bad
			Resize(src, h, w, got, h, w)
			resize(src, h, w, want, h, w)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%d×%d with %v: element %d is %v, the bilinear arithmetic gives %v", h, w, bad, i, got[i], want[i])
				}
			}
		}
	}
}
