package report

import (
	"image/color"
	"math"
)

// viridisAnchors are every 16th entry (0, 16, ..., 240) and the last
// (255) of the 256-entry viridis table that matplotlib ships
// (lib/matplotlib/_cm_listed.py, _viridis_data; by Nathaniel J. Smith,
// Stéfan van der Walt and Eric Firing, released under CC0). Viridis is
// perceptually uniform, readable in gray and by colour-blind viewers.
// Between anchors Viridis interpolates linearly, within 1/255 of the full
// table (TestViridis checks entries that are not anchors).
var viridisAnchors = [17][3]float64{
	{0.267004, 0.004874, 0.329415},
	{0.282327, 0.094955, 0.417331},
	{0.278826, 0.175490, 0.483397},
	{0.258965, 0.251537, 0.524736},
	{0.229739, 0.322361, 0.545706},
	{0.199430, 0.387607, 0.554642},
	{0.172719, 0.448791, 0.557885},
	{0.149039, 0.508051, 0.557250},
	{0.127568, 0.566949, 0.550556},
	{0.120638, 0.625828, 0.533488},
	{0.157851, 0.683765, 0.501686},
	{0.246070, 0.738910, 0.452024},
	{0.369214, 0.788888, 0.382914},
	{0.515992, 0.831158, 0.294279},
	{0.678489, 0.863742, 0.189503},
	{0.845561, 0.887322, 0.099702},
	{0.993248, 0.906157, 0.143936},
}

// Viridis maps t in [0, 1] (clipped; NaN as 0) to the viridis colormap:
// dark purple at 0, teal at 0.5, yellow at 1. Heatmaps colour the
// normalised pixel score with it, so the bundle's pixel threshold is
// always the teal of 0.5.
func Viridis(t float64) color.RGBA {
	if !(t > 0) {
		t = 0
	} else if t > 1 {
		t = 1
	}
	x := t * 255 // table index
	i := min(int(x/16), 15)
	lo, hi := float64(16*i), float64(16*(i+1))
	if i == 15 {
		hi = 255
	}
	f := (x - lo) / (hi - lo)
	a, b := viridisAnchors[i], viridisAnchors[i+1]
	ch := func(k int) uint8 { return uint8(math.Round(255 * (a[k] + (b[k]-a[k])*f))) }
	return color.RGBA{R: ch(0), G: ch(1), B: ch(2), A: 255}
}
