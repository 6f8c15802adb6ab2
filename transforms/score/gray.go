package score

// Gray returns the first channel of a [3,S,S] model input tensor as 8-bit
// gray, for heatmap overlays.
func Gray(tensor []float32, s int) []uint8 {
	g := make([]uint8, s*s)
	for i := range g {
		g[i] = uint8(clamp01(tensor[i])*255 + 0.5)
	}
	return g
}
