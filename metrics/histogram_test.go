package metrics

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// syntheticMaps draws count 256x256 maps resembling a detector's output:
// continuous scores around 0.2 on normal pixels, Gaussian bumps up to ~1.5
// over elliptic defects, smoothed noise everywhere, a few bumps without
// defect (false positives) and defects without bump (misses).
func syntheticMaps(seed uint64, count int) []Map {
	const rows, cols = 256, 256
	r := rand.New(rand.NewPCG(seed, 99))
	maps := make([]Map, count)
	for i := range maps {
		m := Map{Rows: rows, Cols: cols, Scores: make([]float32, rows*cols), Mask: make([]uint8, rows*cols)}
		type blob struct{ y, x, ry, rx, amp float64 }
		var blobs []blob
		for range r.IntN(4) {
			blobs = append(blobs, blob{r.Float64() * rows, r.Float64() * cols, 2 + r.Float64()*20, 2 + r.Float64()*20, r.Float64() * 1.3})
		}
		for p := range m.Scores {
			y, x := float64(p/cols), float64(p%cols)
			s := 0.2 + 0.05*math.Sin(x/9+float64(i))*math.Cos(y/7) + 0.04*r.NormFloat64()
			for k, b := range blobs {
				d := (y-b.y)*(y-b.y)/(b.ry*b.ry) + (x-b.x)*(x-b.x)/(b.rx*b.rx)
				if k%3 != 2 && d < 1 {
					m.Mask[p] = 1
				}
				if k%3 != 1 {
					s += b.amp * math.Exp(-d)
				}
			}
			m.Scores[p] = float32(math.Abs(s))
		}
		maps[i] = m
	}
	return maps
}

// TestHistogramErrorSynthetic measures the histogram metrics against the
// exact ones on ~5 M pixels (77 maps of 256x256).
func TestHistogramErrorSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("5 M pixels")
	}
	maps := syntheticMaps(7, 77)
	auc, err := PixelAUROC(maps)
	if err != nil {
		t.Fatal(err)
	}
	pro, err := AUPRO(maps, PROLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exact: pixel AUROC %.9f, AU-PRO %.9f", auc, pro)
	for _, bits := range []int{8, 12, DefaultHistogramBits, 16} {
		hauc, hpro, h := histogramMetrics(t, maps, bits, PROLimit, 4)
		t.Logf("bits=%d (%d normal, %d anomalous bins): pixel AUROC error %.2e, AU-PRO error %.2e",
			bits, h.Normal.Len(), len(h.Anomalous), hauc-auc, hpro-pro)
		if bits >= DefaultHistogramBits && (!near(hauc, auc, 1e-4) || !near(hpro, pro, 1e-4)) {
			t.Errorf("bits=%d: histogram pixel AUROC %v, AU-PRO %v; exact %v, %v", bits, hauc, hpro, auc, pro)
		}
	}
}

// TestAddMapCounts checks AddMap's counts, which sort the normal pixels'
// bins and count runs, against counting pixel by pixel, on maps with
// negative, zero and repeated scores, into two histograms at once.
func TestAddMapCounts(t *testing.T) {
	for _, bits := range []int{0, 5, DefaultHistogramBits, 23} {
		maps := syntheticMaps(uint64(bits)+1, 3)
		for k := range maps[0].Scores[:5000] {
			maps[0].Scores[k] = float32(k%7) - 3 // negatives, zeros, runs
		}
		wantN, wantA := map[uint32]int64{}, map[uint32]int64{}
		h1, _ := NewHistogram(bits)
		h2, _ := NewHistogram(bits)
		for _, m := range maps {
			for i, s := range m.Scores {
				if m.Mask[i] == 0 {
					wantN[binOf(s, bits)]++
				} else {
					wantA[binOf(s, bits)]++
				}
			}
			if err := AddMap(m, h1, h2); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range []*Histogram{h1, h2} {
			normal := map[uint32]int64{}
			for i, b := range h.Normal.Bins {
				normal[b] = h.Normal.Counts[i]
			}
			if !h.Normal.valid() || !countsEqual(normal, wantN) || !countsEqual(h.Anomalous, wantA) {
				t.Fatalf("bits %d: counts differ from pixel-by-pixel counting (%d/%d normal bins, %d/%d anomalous)",
					bits, h.Normal.Len(), len(wantN), len(h.Anomalous), len(wantA))
			}
		}
	}
}

// TestHistogramRejectsBadRuns checks that a histogram whose normal runs
// break their invariants (as a corrupt or foreign accumulator could) fails
// its metrics and merges instead of giving wrong values.
func TestHistogramRejectsBadRuns(t *testing.T) {
	for name, r := range map[string]Runs{
		"unsorted":       {Bins: []uint32{5, 3}, Counts: []int64{1, 1}},
		"repeated bin":   {Bins: []uint32{3, 3}, Counts: []int64{1, 1}},
		"zero count":     {Bins: []uint32{3, 5}, Counts: []int64{1, 0}},
		"lengths differ": {Bins: []uint32{3, 5}, Counts: []int64{1}},
		"negative count": {Bins: []uint32{3}, Counts: []int64{-2}},
	} {
		h, _ := NewHistogram(DefaultHistogramBits)
		h.Normal = r
		h.Anomalous[4] = 1
		h.Overlap[4] = 1
		h.Regions = 1
		if _, err := h.AUROC(); err == nil {
			t.Errorf("%s: AUROC accepted %+v", name, r)
		}
		if _, err := h.AUPRO(PROLimit); err == nil {
			t.Errorf("%s: AUPRO accepted %+v", name, r)
		}
		good, _ := NewHistogram(DefaultHistogramBits)
		if err := good.Merge(h); err == nil {
			t.Errorf("%s: Merge accepted %+v", name, r)
		}
	}
}

func countsEqual(a, b map[uint32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestNormalRuns checks both ways normalRuns counts (an array over the
// span, or sorting) against a map, on spans either side of denseSpan.
func TestNormalRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{1, 7, 1000} {
		for _, span := range []int{1, n, denseSpan * n, denseSpan*n + 1, 1 << 20} {
			bins := make([]uint32, n)
			want := map[uint32]int64{}
			lo, hi := ^uint32(0), uint32(0)
			for i := range bins {
				b := 1<<22 + uint32(r.IntN(span))
				if i == 0 {
					b = 1 << 22 // the span's ends are in use
				} else if i == 1 {
					b = 1<<22 + uint32(span-1)
				}
				bins[i] = b
				want[b]++
				lo, hi = min(lo, b), max(hi, b)
			}
			got := normalRuns(bins, lo, hi, 23)
			m := map[uint32]int64{}
			for i, b := range got.Bins {
				m[b] = got.Counts[i]
			}
			if !got.valid() || !countsEqual(m, want) {
				t.Errorf("%d values over %d bins: runs %v, want the counts %v", n, span, got, want)
			}
		}
	}
}

func TestSortBins(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, width := range []int{1, 8, 9, 17, 23, 32} {
		for _, n := range []int{0, 1, 2, 255, 4097} {
			x := make([]uint32, n)
			for i := range x {
				x[i] = uint32(r.Uint64() & (1<<width - 1))
			}
			want := slices.Clone(x)
			slices.Sort(want)
			sortBins(x, width)
			if !slices.Equal(x, want) {
				t.Fatalf("width %d, %d values: not sorted", width, n)
			}
		}
	}
}

// BenchmarkAddMap adds 256x256 maps to two histograms, as the pipeline's
// pixel metrics do for each image (its group's and the overall), cycling
// through 16 different maps so that the histograms hold the bins of many
// images, as they do in a run.
func BenchmarkAddMap(b *testing.B) {
	maps := syntheticMaps(1, 16)
	h1, _ := NewHistogram(DefaultHistogramBits)
	h2, _ := NewHistogram(DefaultHistogramBits)
	i := 0
	for b.Loop() {
		if err := AddMap(maps[i%len(maps)], h1, h2); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
