package metrics

import (
	"fmt"
	"slices"
	"sort"
)

// MaxMapPixels bounds Rows*Cols of one Map (2^28, a 16384x16384 map), so
// that a corrupt size is reported before anything is allocated for it.
const MaxMapPixels = 1 << 28

// PROThresholds is the number of thresholds of the MVTec AD AU-PRO curve.
const PROThresholds = 100

// PROLimit is the MVTec AD false positive rate limit of the AU-PRO integral.
const PROLimit = 0.3

// Map is one anomaly map with its ground-truth mask, both row-major with
// Rows*Cols elements. A mask value of 0 marks a normal pixel, any other
// value an anomalous one (so 0/1 and 0/255 masks both work).
type Map struct {
	Rows, Cols int
	Scores     []float32
	Mask       []uint8
}

// validate checks sizes and scores.
func (m Map) validate() error {
	if m.Rows <= 0 || m.Cols <= 0 || m.Rows > MaxMapPixels || m.Cols > MaxMapPixels || m.Rows*m.Cols > MaxMapPixels {
		return fmt.Errorf("metrics: map size %dx%d outside 1..%d pixels", m.Rows, m.Cols, MaxMapPixels)
	}
	n := m.Rows * m.Cols
	if len(m.Scores) != n || len(m.Mask) != n {
		return fmt.Errorf("metrics: %dx%d map has %d scores and %d mask values, want %d each", m.Rows, m.Cols, len(m.Scores), len(m.Mask), n)
	}
	for i, s := range m.Scores {
		if s != s {
			return fmt.Errorf("metrics: map score at row %d, column %d is NaN", i/m.Cols, i%m.Cols)
		}
	}
	return nil
}

// Regions labels the 8-connected components of the anomalous pixels of a
// rows x cols mask (nonzero = anomalous). labels[i] is 0 for normal pixels
// and 1..n for the component of pixel i, numbered in raster order of their
// first pixel.
func Regions(rows, cols int, mask []uint8) (labels []int32, n int, err error) {
	if rows <= 0 || cols <= 0 || rows > MaxMapPixels || cols > MaxMapPixels || rows*cols > MaxMapPixels {
		return nil, 0, fmt.Errorf("metrics: mask size %dx%d outside 1..%d pixels", rows, cols, MaxMapPixels)
	}
	if len(mask) != rows*cols {
		return nil, 0, fmt.Errorf("metrics: %dx%d mask has %d values", rows, cols, len(mask))
	}
	labels = make([]int32, len(mask))
	var stack []int
	for start, v := range mask {
		if v == 0 || labels[start] != 0 {
			continue
		}
		n++
		labels[start] = int32(n)
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			r, c := p/cols, p%cols
			for dr := -1; dr <= 1; dr++ {
				for dc := -1; dc <= 1; dc++ {
					rr, cc := r+dr, c+dc
					if rr < 0 || rr >= rows || cc < 0 || cc >= cols {
						continue
					}
					q := rr*cols + cc
					if mask[q] != 0 && labels[q] == 0 {
						labels[q] = int32(n)
						stack = append(stack, q)
					}
				}
			}
		}
	}
	return labels, n, nil
}

// thresholdRank returns the 0-based rank, among n sorted normal-pixel
// scores, of the k-th of PROThresholds thresholds: floor(k*(n-1)/99), the
// positions numpy.linspace(0, n-1, 100).astype(int) gives.
func thresholdRank(k int, n int64) int64 {
	return int64(k) * (n - 1) / (PROThresholds - 1)
}

// integratePRO returns the MVTec AD AU-PRO of a curve: the points
// (fpr[k], pro[k]) plus (0, 0) and (1, 1), sorted by FPR (then PRO),
// integrated with the trapezoid rule up to limit (interpolating linearly at
// limit) and divided by limit.
func integratePRO(fpr, pro []float64, limit float64) (float64, error) {
	if !(limit > 0 && limit <= 1) {
		return 0, fmt.Errorf("metrics: AU-PRO FPR limit %v outside (0, 1]", limit)
	}
	type pt struct{ f, p float64 }
	pts := make([]pt, 0, len(fpr)+2)
	pts = append(pts, pt{0, 0}, pt{1, 1})
	for k := range fpr {
		pts = append(pts, pt{fpr[k], pro[k]})
	}
	sort.Slice(pts, func(a, b int) bool {
		if pts[a].f != pts[b].f {
			return pts[a].f < pts[b].f
		}
		return pts[a].p < pts[b].p
	})
	var area float64
	for i := 1; i < len(pts); i++ {
		f0, p0, f1, p1 := pts[i-1].f, pts[i-1].p, pts[i].f, pts[i].p
		if f0 >= limit {
			break
		}
		if f1 > limit {
			p1 = p0 + (p1-p0)*(limit-f0)/(f1-f0)
			f1 = limit
		}
		area += (f1 - f0) * (p0 + p1) / 2
	}
	return area / limit, nil
}

// PixelAUROC returns the exact pixel-level AUROC over all pixels of maps
// (ties count one half). It holds every score in memory; Histogram computes
// it for data of any size.
func PixelAUROC(maps []Map) (float64, error) {
	var labels []int
	var scores []float64
	for i, m := range maps {
		if err := m.validate(); err != nil {
			return 0, fmt.Errorf("map %d: %w", i, err)
		}
		for j, s := range m.Scores {
			l := 0
			if m.Mask[j] != 0 {
				l = 1
			}
			labels = append(labels, l)
			scores = append(scores, float64(s))
		}
	}
	return AUROC(labels, scores)
}

// AUPRO returns the exact MVTec AD area under the per-region overlap curve
// up to fprLimit (PROLimit in MVTec AD), normalised to [0, 1]: regions are
// the 8-connected components of every mask; the PROThresholds thresholds are
// the normal-pixel scores at ranks floor(k*(n-1)/99) of the n sorted normal
// scores; FPR(t) is the share of normal pixels with score > t and PRO(t)
// the mean over regions of the share of the region's pixels with score > t.
// It holds every score in memory; Histogram and PRO compute it for data of
// any size. It fails without normal pixels or without regions.
func AUPRO(maps []Map, fprLimit float64) (float64, error) {
	var normal []float32
	var regions [][]float32
	for i, m := range maps {
		if err := m.validate(); err != nil {
			return 0, fmt.Errorf("map %d: %w", i, err)
		}
		labels, n, err := Regions(m.Rows, m.Cols, m.Mask)
		if err != nil {
			return 0, fmt.Errorf("map %d: %w", i, err)
		}
		first := len(regions)
		regions = append(regions, make([][]float32, n)...)
		for j, l := range labels {
			if l == 0 {
				normal = append(normal, m.Scores[j])
			} else {
				regions[first+int(l)-1] = append(regions[first+int(l)-1], m.Scores[j])
			}
		}
	}
	if len(normal) == 0 || len(regions) == 0 {
		return 0, fmt.Errorf("metrics: AU-PRO needs normal pixels and anomalous regions, have %d and %d", len(normal), len(regions))
	}
	slices.Sort(normal)
	for _, r := range regions {
		slices.Sort(r)
	}
	// above counts the elements of sorted s greater than t.
	above := func(s []float32, t float32) int {
		return len(s) - sort.Search(len(s), func(i int) bool { return s[i] > t })
	}
	fpr := make([]float64, PROThresholds)
	pro := make([]float64, PROThresholds)
	for k := range PROThresholds {
		t := normal[thresholdRank(k, int64(len(normal)))]
		fpr[k] = float64(above(normal, t)) / float64(len(normal))
		for _, r := range regions {
			pro[k] += float64(above(r, t)) / float64(len(r))
		}
		pro[k] /= float64(len(regions))
	}
	return integratePRO(fpr, pro, fprLimit)
}
