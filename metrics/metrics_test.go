package metrics

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestRegions(t *testing.T) {
	for _, c := range []struct {
		name string
		mask []string
		want int
	}{
		{"empty", []string{"...", "..."}, 0},
		{"full", []string{"##", "##"}, 1},
		{"diagonal touch is one region", []string{"#..", ".#.", "..#"}, 1},
		{"anti-diagonal", []string{"..#", ".#.", "#.."}, 1},
		{"gap of one column", []string{"#.#", "#.#"}, 2},
		{"ring", []string{"###", "#.#", "###"}, 1},
		{"u shape", []string{"#.#", "#.#", "###"}, 1},
		{"corners", []string{"#.#", "...", "#.#"}, 4},
		{"single row", []string{"#.##.#"}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			rows, cols := len(c.mask), len(c.mask[0])
			mask := make([]uint8, 0, rows*cols)
			for _, r := range c.mask {
				for _, ch := range r {
					mask = append(mask, map[rune]uint8{'.': 0, '#': 255}[ch])
				}
			}
			labels, n, err := Regions(rows, cols, mask)
			if err != nil || n != c.want {
				t.Fatalf("Regions = %d, %v; want %d", n, err, c.want)
			}
			for i, l := range labels {
				if (l == 0) != (mask[i] == 0) || int(l) > n {
					t.Fatalf("pixel %d: mask %d, label %d", i, mask[i], l)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	ok := Map{Rows: 1, Cols: 2, Scores: []float32{0, 1}, Mask: []uint8{0, 1}}
	for _, c := range []struct {
		name string
		err  func() error
		want string
	}{
		{"length mismatch", func() error { _, err := AUROC([]int{0, 1}, []float64{1}); return err }, "2 labels but 1 scores"},
		{"empty", func() error { _, err := AUROC(nil, nil); return err }, "no samples"},
		{"bad label", func() error { _, err := AUROC([]int{0, 2}, []float64{1, 2}); return err }, "label 2 at index 1"},
		{"NaN score", func() error { _, err := AveragePrecision([]int{0, 1}, []float64{1, math.NaN()}); return err }, "index 1 is NaN"},
		{"one class AUROC", func() error { _, err := AUROC([]int{1, 1}, []float64{1, 2}); return err }, "2 positives and 0 negatives"},
		{"no positives AP", func() error { _, err := AveragePrecision([]int{0, 0}, []float64{1, 2}); return err }, "without positives"},
		{"no positives F1", func() error { _, _, err := F1Max([]int{0}, []float64{1}); return err }, "without positives"},
		{"no negatives ROC", func() error { _, err := ROCCurve([]int{1}, []float64{1}); return err }, "1 positives and 0 negatives"},
		{"no positives PR", func() error { _, err := PRCurve([]int{0}, []float64{1}); return err }, "without positives"},
		{"map size", func() error {
			_, err := PixelAUROC([]Map{{Rows: 2, Cols: 2, Scores: []float32{1}, Mask: []uint8{1}}})
			return err
		}, "has 1 scores and 1 mask values, want 4"},
		{"huge map", func() error { _, err := AUPRO([]Map{{Rows: 1 << 20, Cols: 1 << 20}}, PROLimit); return err }, "outside 1..268435456"},
		{"negative size", func() error { _, _, err := Regions(-1, 4, nil); return err }, "mask size -1x4"},
		{"NaN pixel", func() error {
			_, err := AUPRO([]Map{{Rows: 1, Cols: 2, Scores: []float32{float32(math.NaN()), 0}, Mask: []uint8{0, 1}}}, PROLimit)
			return err
		}, "row 0, column 0 is NaN"},
		{"no regions", func() error {
			_, err := AUPRO([]Map{{Rows: 1, Cols: 2, Scores: []float32{0, 1}, Mask: []uint8{0, 0}}}, PROLimit)
			return err
		}, "have 2 and 0"},
		{"bad limit", func() error { _, err := AUPRO([]Map{ok}, 0); return err }, "limit 0 outside"},
		{"histogram bits", func() error { _, err := NewHistogram(24); return err }, "bits 24 outside 0..23"},
		{"histogram merge", func() error {
			a, _ := NewHistogram(8)
			b, _ := NewHistogram(9)
			return a.Merge(b)
		}, "8 and 9 bits"},
		{"zero histogram", func() error { var h Histogram; h.Bits = -1; return h.Add(ok) }, "not made by NewHistogram"},
		{"histogram no normal", func() error {
			h, _ := NewHistogram(8)
			_ = h.Add(Map{Rows: 1, Cols: 1, Scores: []float32{1}, Mask: []uint8{1}})
			_, err := h.AUPRO(PROLimit)
			return err
		}, "have 0 and 1"},
		{"histogram no regions", func() error {
			h, _ := NewHistogram(8)
			_ = h.Add(Map{Rows: 1, Cols: 2, Scores: []float32{0, 1}, Mask: []uint8{0, 0}})
			_, err := h.AUPRO(PROLimit)
			return err
		}, "have 2 and 0"},
		{"histogram bad limit", func() error {
			h, _ := NewHistogram(8)
			_ = h.Add(ok)
			_, err := h.AUPRO(2)
			return err
		}, "limit 2 outside"},
		{"mixed bits", func() error {
			a, _ := NewHistogram(8)
			b, _ := NewHistogram(9)
			return AddMap(ok, a, b)
		}, "8 and 9 bits at once"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.err()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestBins checks that bins keep the order of scores, and that at 23 bits
// distinct scores have distinct bins.
func TestBins(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	specials := []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		math.MaxFloat32, -math.MaxFloat32, float32(math.Inf(1)), float32(math.Inf(-1))}
	for _, bits := range []int{0, 5, DefaultHistogramBits, 23} {
		for i := range 20000 {
			var a, b float32
			if i < len(specials)*len(specials) {
				a, b = specials[i/len(specials)], specials[i%len(specials)]
			} else {
				a = math.Float32frombits(r.Uint32())
				b = float32(r.NormFloat64())
				if a != a {
					continue
				}
			}
			ba, bb := binOf(a, bits), binOf(b, bits)
			if (a < b && ba > bb) || (a > b && ba < bb) || (a == b && ba != bb) {
				t.Fatalf("bits %d: %v < %v but bins %d, %d", bits, a, b, ba, bb)
			}
			if bits == 23 && a != b && !(a == 0 && b == 0) && ba == bb {
				t.Fatalf("23-bit bins of %v and %v are both %d", a, b, ba)
			}
		}
	}
}

// bruteAUROC is the Mann-Whitney statistic by comparing every pair.
func bruteAUROC(labels []int, scores []float64) float64 {
	var u, pairs float64
	for i := range labels {
		for j := range labels {
			if labels[i] == 1 && labels[j] == 0 {
				pairs++
				if scores[i] > scores[j] {
					u++
				} else if scores[i] == scores[j] {
					u += 0.5
				}
			}
		}
	}
	return u / pairs
}

// decodeBinary turns fuzz bytes into labels and scores (3 bytes a sample:
// label bit and a 16-bit score with few distinct values, to make ties).
func decodeBinary(b []byte) ([]int, []float64) {
	var labels []int
	var scores []float64
	for ; len(b) >= 3 && len(labels) < 400; b = b[3:] {
		labels = append(labels, int(b[0]&1))
		scores = append(scores, float64(int16(binary.LittleEndian.Uint16(b[1:])))/float64(1+b[0]>>1))
	}
	return labels, scores
}

// encodeBinary is the inverse of decodeBinary for seeds (scores rounded).
func encodeBinary(labels []int, scores []float64) []byte {
	var b []byte
	for i := range labels {
		b = append(b, byte(labels[i]))
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(math.Round(scores[i]*1000))))
	}
	return b
}

func FuzzBinary(f *testing.F) {
	for _, c := range loadGolden(f).BinaryCases {
		f.Add(encodeBinary(c.Labels, c.Scores))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		labels, scores := decodeBinary(b)
		pos := 0
		for _, l := range labels {
			pos += l
		}
		auc, err := AUROC(labels, scores)
		if pos == 0 || pos == len(labels) {
			if err == nil {
				t.Fatalf("AUROC with one class = %v", auc)
			}
		} else if err != nil || math.Abs(auc-bruteAUROC(labels, scores)) > 1e-12 {
			t.Fatalf("AUROC = %v, %v; pairwise %v", auc, err, bruteAUROC(labels, scores))
		}
		ap, err := AveragePrecision(labels, scores)
		if (err == nil) != (pos > 0) || ap < 0 || ap > 1+1e-12 {
			t.Fatalf("AveragePrecision = %v, %v with %d positives", ap, err, pos)
		}
		f1, thr, err := F1Max(labels, scores)
		if (err == nil) != (pos > 0) || f1 < 0 || f1 > 1+1e-12 {
			t.Fatalf("F1Max = %v, %v with %d positives", f1, err, pos)
		}
		if err == nil {
			var tp, fp int
			for i := range labels {
				if scores[i] >= thr {
					tp += labels[i]
					fp += 1 - labels[i]
				}
			}
			if want := 2 * float64(tp) / float64(tp+fp+pos); math.Abs(want-f1) > 1e-12 {
				t.Fatalf("F1Max %v at threshold %v, but F1 there is %v", f1, thr, want)
			}
		}
	})
}

// FuzzPixel checks that the exact and 23-bit histogram pixel metrics agree
// on arbitrary small maps, and that nothing panics.
func FuzzPixel(f *testing.F) {
	for _, c := range loadGolden(f).AUPROCases {
		for i, m := range goldenMaps(f, c.Masks, c.Maps) {
			if i > 2 {
				break
			}
			b := []byte{byte(m.Rows), byte(m.Cols)}
			for j := range m.Scores {
				b = append(b, m.Mask[j], byte(int8(m.Scores[j]*30)))
			}
			f.Add(b[:2+2*16*32]) // the top half of the map
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 {
			return
		}
		rows, cols := int(b[0]%40), int(b[1]%40)
		b = b[2:]
		m := Map{Rows: rows, Cols: cols}
		for ; len(b) >= 2 && len(m.Scores) < rows*cols; b = b[2:] {
			m.Mask = append(m.Mask, b[0]&1)
			m.Scores = append(m.Scores, float32(int8(b[1]))/16)
		}
		auc, err := PixelAUROC([]Map{m})
		pro, perr := AUPRO([]Map{m}, PROLimit)
		h, _ := NewHistogram(23)
		if herr := h.Add(m); herr != nil {
			if err == nil || perr == nil {
				t.Fatalf("histogram refused a map the exact metrics took: %v", herr)
			}
			return
		}
		if hauc, herr := h.AUROC(); (herr == nil) != (err == nil) || (err == nil && math.Abs(hauc-auc) > 1e-12) {
			t.Fatalf("histogram AUROC %v, %v; exact %v, %v", hauc, herr, auc, err)
		}
		hpro, herr := h.AUPRO(PROLimit)
		if (herr == nil) != (perr == nil) || (perr == nil && math.Abs(hpro-pro) > 1e-12) {
			t.Fatalf("histogram AU-PRO %v, %v; exact %v, %v", hpro, herr, pro, perr)
		}
		if perr == nil && (pro < 0 || pro > 1+1e-12) {
			t.Fatalf("AU-PRO %v outside [0, 1]", pro)
		}
	})
}
