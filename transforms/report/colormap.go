package report

import "image/color"

// viridisAnchors are entries (index, r, g, b) of the 256-entry viridis
// table that matplotlib ships
// (lib/matplotlib/_cm_listed.py, _viridis_data; by Nathaniel J. Smith,
// Stéfan van der Walt and Eric Firing, released under CC0). Viridis is
// perceptually uniform, readable in gray and by colour-blind viewers.
// They are every 16th entry, and every 4th from 240 where blue turns;
// between them Viridis interpolates linearly, within about 1/255 of the
// full table (TestViridis checks entries that are not anchors).
var viridisAnchors = [...][4]float64{
	{0, 0.267004, 0.004874, 0.329415},
	{16, 0.282327, 0.094955, 0.417331},
	{32, 0.278826, 0.175490, 0.483397},
	{48, 0.258965, 0.251537, 0.524736},
	{64, 0.229739, 0.322361, 0.545706},
	{80, 0.199430, 0.387607, 0.554642},
	{96, 0.172719, 0.448791, 0.557885},
	{112, 0.149039, 0.508051, 0.557250},
	{128, 0.127568, 0.566949, 0.550556},
	{144, 0.120638, 0.625828, 0.533488},
	{160, 0.157851, 0.683765, 0.501686},
	{176, 0.246070, 0.738910, 0.452024},
	{192, 0.369214, 0.788888, 0.382914},
	{208, 0.515992, 0.831158, 0.294279},
	{224, 0.678489, 0.863742, 0.189503},
	{240, 0.845561, 0.887322, 0.099702},
	{244, 0.886271, 0.892374, 0.095374},
	{248, 0.926106, 0.897330, 0.104071},
	{252, 0.964894, 0.902323, 0.123941},
	{255, 0.993248, 0.906157, 0.143936},
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
	i := 0
	for i < len(viridisAnchors)-2 && viridisAnchors[i+1][0] <= x {
		i++
	}
	a, b := viridisAnchors[i], viridisAnchors[i+1]
	f := (x - a[0]) / (b[0] - a[0])
	// Every channel value lies between 1.2 and 253.3, where adding 0.5
	// and truncating rounds exactly as math.Round does (half away from
	// zero), at a fraction of its cost: Viridis colours every pixel of a
	// heatmap. TestViridisRounding compares the two.
	ch := func(k int) uint8 { return uint8(255*(a[k]+(b[k]-a[k])*f) + 0.5) }
	return color.RGBA{R: ch(1), G: ch(2), B: ch(3), A: 255}
}
