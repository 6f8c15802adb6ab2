package metrics

import (
	"math"
	"testing"

	"github.com/multiad/multiad/internal/golden"
)

func loadGolden(t testing.TB) golden.Metrics { return golden.LoadMetrics(t) }

// goldenMaps converts a golden case's nested arrays to Maps.
func goldenMaps(t testing.TB, masks [][][]uint8, maps [][][]float64) []Map {
	t.Helper()
	if len(masks) != len(maps) {
		t.Fatalf("%d masks, %d maps", len(masks), len(maps))
	}
	out := make([]Map, len(maps))
	for i := range maps {
		m := Map{Rows: len(maps[i]), Cols: len(maps[i][0])}
		for r := range maps[i] {
			for c := range maps[i][r] {
				m.Scores = append(m.Scores, float32(maps[i][r][c]))
				m.Mask = append(m.Mask, masks[i][r][c])
			}
		}
		out[i] = m
	}
	return out
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func TestGoldenBinary(t *testing.T) {
	for _, c := range loadGolden(t).BinaryCases {
		t.Run(c.Name, func(t *testing.T) {
			auc, err := AUROC(c.Labels, c.Scores)
			if err != nil || !near(auc, c.AUROC, 1e-9) {
				t.Errorf("AUROC = %v, %v; want %v", auc, err, c.AUROC)
			}
			ap, err := AveragePrecision(c.Labels, c.Scores)
			if err != nil || !near(ap, c.AveragePrecision, 1e-9) {
				t.Errorf("AveragePrecision = %v, %v; want %v", ap, err, c.AveragePrecision)
			}
			f1, thr, err := F1Max(c.Labels, c.Scores)
			if err != nil || !near(f1, c.F1Max, 1e-9) || !near(thr, c.F1MaxThreshold, 1e-9) {
				t.Errorf("F1Max = %v at %v, %v; want %v at %v", f1, thr, err, c.F1Max, c.F1MaxThreshold)
			}
		})
	}
}

func TestGoldenPixelExact(t *testing.T) {
	for _, c := range loadGolden(t).AUPROCases {
		t.Run(c.Name, func(t *testing.T) {
			maps := goldenMaps(t, c.Masks, c.Maps)
			auc, err := PixelAUROC(maps)
			if err != nil || !near(auc, c.PixelAUROC, 1e-9) {
				t.Errorf("PixelAUROC = %v, %v; want %v", auc, err, c.PixelAUROC)
			}
			pro, err := AUPRO(maps, c.FPRLimit)
			if err != nil || !near(pro, c.AUPRO, 1e-9) {
				t.Errorf("AUPRO = %v, %v; want %v", pro, err, c.AUPRO)
			}
		})
	}
}

// histogramMetrics computes pixel AUROC and AU-PRO with the one-pass
// Histogram, the maps split into parts merged in order.
func histogramMetrics(t testing.TB, maps []Map, bits int, limit float64, parts int) (auroc, aupro float64, h *Histogram) {
	t.Helper()
	h, _ = NewHistogram(bits)
	for p := range parts {
		hp, _ := NewHistogram(bits)
		for i := p; i < len(maps); i += parts {
			if err := hp.Add(maps[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.Merge(hp); err != nil {
			t.Fatal(err)
		}
	}
	auroc, err := h.AUROC()
	if err != nil {
		t.Fatal(err)
	}
	aupro, err = h.AUPRO(limit)
	if err != nil {
		t.Fatal(err)
	}
	return auroc, aupro, h
}

func TestGoldenPixelHistogram(t *testing.T) {
	for _, c := range loadGolden(t).AUPROCases {
		maps := goldenMaps(t, c.Masks, c.Maps)
		for _, bits := range []int{8, 12, DefaultHistogramBits, 23} {
			auc, pro, _ := histogramMetrics(t, maps, bits, c.FPRLimit, 3)
			t.Logf("%s bits=%d: pixel AUROC error %.3g, AU-PRO error %.3g", c.Name, bits, auc-c.PixelAUROC, pro-c.AUPRO)
			if bits < DefaultHistogramBits {
				continue
			}
			if !near(auc, c.PixelAUROC, 1e-4) {
				t.Errorf("%s bits=%d: histogram pixel AUROC = %v, want %v", c.Name, bits, auc, c.PixelAUROC)
			}
			if !near(pro, c.AUPRO, 1e-4) {
				t.Errorf("%s bits=%d: histogram AU-PRO = %v, want %v", c.Name, bits, pro, c.AUPRO)
			}
		}
	}
}
