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
			bits, len(h.Normal), len(h.Anomalous), hauc-auc, hpro-pro)
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
			if !countsEqual(h.Normal, wantN) || !countsEqual(h.Anomalous, wantA) {
				t.Fatalf("bits %d: counts differ from pixel-by-pixel counting (%d/%d normal bins, %d/%d anomalous)",
					bits, len(h.Normal), len(wantN), len(h.Anomalous), len(wantA))
			}
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

// BenchmarkAddMap adds one 256x256 map to two histograms, as the
// pipeline's pixel metrics do for each image (its group's and the overall).
func BenchmarkAddMap(b *testing.B) {
	m := syntheticMaps(1, 1)[0]
	h1, _ := NewHistogram(DefaultHistogramBits)
	h2, _ := NewHistogram(DefaultHistogramBits)
	for b.Loop() {
		if err := AddMap(m, h1, h2); err != nil {
			b.Fatal(err)
		}
	}
}
