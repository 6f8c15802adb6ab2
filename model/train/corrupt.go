package train

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Corruptions are the synthetic defects Corrupt paints into a region.
const (
	corruptShift    = iota // brightness offset
	corruptContrast        // contrast scaled about the region's mean: flattened or exaggerated texture
	corruptBlur            // texture smoothed away
	corruptPaste           // texture copied from elsewhere in the image, possibly flipped
	corruptNoise           // Gaussian noise
	corruptKinds
)

// Corrupt returns a copy of the [C, S, S] image img (CHW, values in [0, 1])
// with a synthetic defect painted into one random smooth region covering 2–50%
// of the image, drawn from seed: a brightness shift, a contrast change, a
// blur, texture pasted from elsewhere in the image, or noise, blended with a
// random strength and clamped to [0, 1]. Training a student on corrupted
// inputs against the teacher features of the clean image (Config.Denoise)
// teaches it to answer normal features where the input is not normal, which
// widens the student–teacher gap over a whole anomalous region instead of
// only at its border.
func Corrupt(img []float32, S int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0x636f7272757074))
	return corruptKind(img, S, rng.IntN(corruptKinds), rng)
}

// corruptKind is Corrupt with the kind of defect given.
func corruptKind(img []float32, S, kind int, rng *rand.Rand) []float32 {
	mask := corruptMask(S, rng)
	out := slices.Clone(img)
	C := len(img) / (S * S)
	alpha := float32(0.5 + 0.5*rng.Float64())
	scale := float64(S) / 256
	// Parameters shared by every channel, so that gray stays gray.
	delta := float32((0.05 + 0.2*rng.Float64()) * float64(1-2*rng.IntN(2)))
	gamma := 0.2 + 0.4*rng.Float64()
	if rng.IntN(2) == 1 {
		gamma = 1.5 + rng.Float64()
	}
	radius := max(1, int(math.Round((2+4*rng.Float64())*scale)))
	dx, dy := rng.IntN(S), rng.IntN(S)
	hflip, vflip := rng.IntN(2) == 1, rng.IntN(2) == 1
	noise := float32(0.02 + 0.08*rng.Float64())
	var noiseField []float32
	if kind == corruptNoise {
		noiseField = make([]float32, S*S)
		for i := range noiseField {
			noiseField[i] = noise * float32(rng.NormFloat64())
		}
	}
	for c := 0; c < C; c++ {
		src, dst := img[c*S*S:(c+1)*S*S], out[c*S*S:(c+1)*S*S]
		var alt []float32 // the corrupted plane
		switch kind {
		case corruptShift:
			alt = make([]float32, S*S)
			for i, v := range src {
				alt[i] = v + delta
			}
		case corruptContrast:
			var sum, w float64
			for i, v := range src {
				sum += float64(mask[i]) * float64(v)
				w += float64(mask[i])
			}
			mean := float32(sum / max(w, 1e-6))
			alt = make([]float32, S*S)
			for i, v := range src {
				alt[i] = mean + float32(gamma)*(v-mean)
			}
		case corruptBlur:
			alt = boxBlur(boxBlur(boxBlur(src, S, radius), S, radius), S, radius)
		case corruptPaste:
			alt = make([]float32, S*S)
			for y := 0; y < S; y++ {
				sy := (y + dy) % S
				if vflip {
					sy = S - 1 - sy
				}
				for x := 0; x < S; x++ {
					sx := (x + dx) % S
					if hflip {
						sx = S - 1 - sx
					}
					alt[y*S+x] = src[sy*S+sx]
				}
			}
		case corruptNoise:
			alt = make([]float32, S*S)
			for i, v := range src {
				alt[i] = v + noiseField[i]
			}
		}
		for i, m := range mask {
			if m == 0 {
				continue
			}
			a := alpha * m
			dst[i] = min(max((1-a)*src[i]+a*alt[i], 0), 1)
		}
	}
	return out
}

// corruptMask returns an S×S mask in [0, 1]: bilinearly upsampled uniform
// noise on a coarse grid, thresholded so that 2–50% of the pixels are inside,
// with a soft edge.
func corruptMask(S int, rng *rand.Rand) []float32 {
	g := []int{2, 3, 4, 6, 8}[rng.IntN(5)]
	grid := make([]float64, (g+1)*(g+1))
	for i := range grid {
		grid[i] = rng.Float64()
	}
	field := make([]float64, S*S)
	for y := 0; y < S; y++ {
		fy := (float64(y) + 0.5) / float64(S) * float64(g)
		y0 := min(int(fy), g-1)
		ty := fy - float64(y0)
		for x := 0; x < S; x++ {
			fx := (float64(x) + 0.5) / float64(S) * float64(g)
			x0 := min(int(fx), g-1)
			tx := fx - float64(x0)
			a := grid[y0*(g+1)+x0]*(1-tx) + grid[y0*(g+1)+x0+1]*tx
			b := grid[(y0+1)*(g+1)+x0]*(1-tx) + grid[(y0+1)*(g+1)+x0+1]*tx
			field[y*S+x] = a*(1-ty) + b*ty
		}
	}
	sorted := slices.Clone(field)
	slices.Sort(sorted)
	area := 0.02 + 0.48*rng.Float64()
	hi := sorted[min(int((1-area)*float64(len(sorted))), len(sorted)-1)]
	soft := 0.02
	lo := hi - soft
	mask := make([]float32, S*S)
	for i, v := range field {
		mask[i] = float32(min(max((v-lo)/soft, 0), 1))
	}
	return mask
}

// boxBlur averages each pixel of an S×S plane over a (2r+1)² window,
// clamping at the border.
func boxBlur(src []float32, S, r int) []float32 {
	tmp := make([]float32, S*S)
	out := make([]float32, S*S)
	n := float32(2*r + 1)
	for y := 0; y < S; y++ {
		row := src[y*S : (y+1)*S]
		for x := 0; x < S; x++ {
			var s float32
			for d := -r; d <= r; d++ {
				s += row[min(max(x+d, 0), S-1)]
			}
			tmp[y*S+x] = s / n
		}
	}
	for y := 0; y < S; y++ {
		for x := 0; x < S; x++ {
			var s float32
			for d := -r; d <= r; d++ {
				s += tmp[min(max(y+d, 0), S-1)*S+x]
			}
			out[y*S+x] = s / n
		}
	}
	return out
}
