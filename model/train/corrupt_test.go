package train

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestCorrupt checks Corrupt on a textured gray image for every kind of
// defect: deterministic in its seed, the input left alone, values in [0, 1],
// the three channels kept equal, and a changed region covering between 1%
// and 60% of the image (the mask covers 2–50%, softened at its edge; a
// pixel whose corrupted value equals its own counts as unchanged).
func TestCorrupt(t *testing.T) {
	const S = 64
	rng := rand.New(rand.NewPCG(1, 2))
	plane := make([]float32, S*S)
	for i := range plane {
		plane[i] = 0.3 + 0.4*rng.Float32()
	}
	img := slices.Concat(plane, plane, plane)
	orig := slices.Clone(img)
	for seed := uint64(1); seed <= 60; seed++ {
		kind := int(seed) % corruptKinds
		a := corruptKind(img, S, kind, rand.New(rand.NewPCG(seed, 0)))
		if b := corruptKind(img, S, kind, rand.New(rand.NewPCG(seed, 0))); !slices.Equal(a, b) {
			t.Fatalf("seed %d, kind %d: two calls differ", seed, kind)
		}
		if !slices.Equal(img, orig) {
			t.Fatalf("seed %d, kind %d: input modified", seed, kind)
		}
		if !slices.Equal(a[:S*S], a[S*S:2*S*S]) || !slices.Equal(a[:S*S], a[2*S*S:]) {
			t.Fatalf("seed %d, kind %d: channels of a gray image differ", seed, kind)
		}
		changed := 0
		for i, v := range a {
			if v < 0 || v > 1 {
				t.Fatalf("seed %d, kind %d: value %g at %d out of [0, 1]", seed, kind, v, i)
			}
			if i < S*S && v != img[i] {
				changed++
			}
		}
		if f := float64(changed) / (S * S); f < 0.01 || f > 0.6 {
			t.Errorf("seed %d, kind %d: %.1f%% of the pixels changed, want 1–60%%", seed, kind, 100*f)
		}
	}
	if s := Corrupt(img, S, 1); !slices.Equal(s, Corrupt(img, S, 1)) || slices.Equal(s, Corrupt(img, S, 2)) {
		t.Error("Corrupt is not a function of its seed alone")
	}
}
