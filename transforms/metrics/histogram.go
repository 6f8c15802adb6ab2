package metrics

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// DefaultHistogramBits is the default resolution of Histogram: 2^14 bins
// per power of two, a relative bin width of 6.1e-5.
const DefaultHistogramBits = 14

// Histogram is a mergeable histogram of pixel scores, split into normal and
// anomalous pixels, for pixel AUROC and the AU-PRO thresholds over data of
// any size. Its memory is bounded by the number of distinct bins in use
// (at most 2^Bits per power of two spanned by the scores), not by the
// number of pixels.
//
// Bins follow the float32 encoding: a score's bin is its sign, its exponent
// and the top Bits bits of its mantissa, so every bin spans a relative width
// of 2^-Bits, the scheme needs no score range, and at Bits = 23 every
// distinct float32 score has its own bin, which makes the histogram exact.
// Two scores in the same bin are treated as tied; two scores further apart
// than the bin width never are. Histogram metrics are exact whenever no bin
// holds two distinct scores, and otherwise differ from the exact ones only
// through the pixels that share a bin. Because bins are relative, scores
// whose spread is tiny against their magnitude (all within 1e-4 of 1000,
// say) fall into few bins: shift such scores towards 0 or raise Bits.
//
// The zero value is not ready: use NewHistogram. Fields are exported for
// serialization; treat them as read-only.
type Histogram struct {
	Bits      int
	Normal    map[uint32]int64
	Anomalous map[uint32]int64
}

// NewHistogram returns an empty histogram keeping bits (0..23) mantissa
// bits of every score.
func NewHistogram(bits int) (*Histogram, error) {
	if bits < 0 || bits > 23 {
		return nil, fmt.Errorf("metrics: histogram bits %d outside 0..23", bits)
	}
	return &Histogram{Bits: bits, Normal: map[uint32]int64{}, Anomalous: map[uint32]int64{}}, nil
}

// binOf returns the bin of score s at bits mantissa bits: the float32 bit
// pattern mapped to an unsigned key whose order is the scores' order, then
// shifted right. -0 and +0 share a bin.
func binOf(s float32, bits int) uint32 {
	b := math.Float32bits(s)
	if s == 0 {
		b = 0
	}
	if b>>31 != 0 {
		b = ^b
	} else {
		b |= 1 << 31
	}
	return b >> (23 - bits)
}

// binTop returns the largest score of a bin at bits mantissa bits (+Inf
// for the bins above the largest finite score).
func binTop(bin uint32, bits int) float64 {
	shift := 23 - bits
	key := bin<<shift | (1<<shift - 1)
	var b uint32
	if key>>31 != 0 {
		b = key &^ (1 << 31)
	} else {
		b = ^key
	}
	if b == 1<<31 { // -0 counts as +0: the bin's top is the negative score nearest 0
		b++
	}
	f := float64(math.Float32frombits(b))
	if math.IsNaN(f) {
		return math.Inf(1)
	}
	return f
}

// check reports whether h is usable.
func (h *Histogram) check() error {
	if h == nil || h.Bits < 0 || h.Bits > 23 {
		return fmt.Errorf("metrics: histogram not made by NewHistogram")
	}
	if h.Normal == nil {
		h.Normal = map[uint32]int64{}
	}
	if h.Anomalous == nil {
		h.Anomalous = map[uint32]int64{}
	}
	return nil
}

// Add counts every pixel of m.
func (h *Histogram) Add(m Map) error {
	if err := h.check(); err != nil {
		return err
	}
	if err := m.validate(); err != nil {
		return err
	}
	for i, s := range m.Scores {
		if m.Mask[i] == 0 {
			h.Normal[binOf(s, h.Bits)]++
		} else {
			h.Anomalous[binOf(s, h.Bits)]++
		}
	}
	return nil
}

// Merge adds the counts of o, which must have the same Bits, to h.
func (h *Histogram) Merge(o *Histogram) error {
	if err := h.check(); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		return err
	}
	if o.Bits != h.Bits {
		return fmt.Errorf("metrics: cannot merge histograms of %d and %d bits", h.Bits, o.Bits)
	}
	for b, c := range o.Normal {
		h.Normal[b] += c
	}
	for b, c := range o.Anomalous {
		h.Anomalous[b] += c
	}
	return nil
}

// Counts returns the number of normal and anomalous pixels counted.
func (h *Histogram) Counts() (normal, anomalous int64) {
	if h == nil {
		return 0, 0
	}
	for _, c := range h.Normal {
		normal += c
	}
	for _, c := range h.Anomalous {
		anomalous += c
	}
	return normal, anomalous
}

// sortedBins returns the keys of counts in increasing order.
func sortedBins(counts map[uint32]int64) []uint32 {
	bins := make([]uint32, 0, len(counts))
	for b := range counts {
		bins = append(bins, b)
	}
	slices.Sort(bins)
	return bins
}

// AUROC returns the pixel AUROC of the counted pixels, pixels sharing a bin
// counting as tied. It fails unless both classes are present.
func (h *Histogram) AUROC() (float64, error) {
	if err := h.check(); err != nil {
		return 0, err
	}
	n, p := h.Counts()
	if n == 0 || p == 0 {
		return 0, fmt.Errorf("metrics: pixel AUROC is undefined with %d anomalous and %d normal pixels", p, n)
	}
	all := make(map[uint32]int64, len(h.Normal)+len(h.Anomalous))
	for b := range h.Normal {
		all[b] = 0
	}
	for b := range h.Anomalous {
		all[b] = 0
	}
	var twiceU float64
	var below int64 // normal pixels in lower bins
	for _, b := range sortedBins(all) {
		neg := h.Normal[b]
		twiceU += float64(h.Anomalous[b]) * float64(2*below+neg)
		below += neg
	}
	return twiceU / (2 * float64(p) * float64(n)), nil
}

// Thresholds are the AU-PRO thresholds fixed by a Histogram of the normal
// pixels: threshold k is the bin of the normal-pixel score at rank
// floor(k*(n-1)/99), and a pixel exceeds it when its bin is higher.
type Thresholds struct {
	Bits int
	// Bins are the bins of the PROThresholds thresholds, non-decreasing.
	Bins []uint32
	// FPR[k] is the share of normal pixels that exceed threshold k.
	FPR []float64
	// Values[k] is the largest score in Bins[k]: the score threshold.
	Values []float64
}

// Thresholds returns the AU-PRO thresholds of the normal pixels counted.
// It fails without normal pixels.
func (h *Histogram) Thresholds() (Thresholds, error) {
	if err := h.check(); err != nil {
		return Thresholds{}, err
	}
	n, _ := h.Counts()
	if n == 0 {
		return Thresholds{}, fmt.Errorf("metrics: AU-PRO thresholds need normal pixels")
	}
	t := Thresholds{
		Bits:   h.Bits,
		Bins:   make([]uint32, PROThresholds),
		FPR:    make([]float64, PROThresholds),
		Values: make([]float64, PROThresholds),
	}
	bins := sortedBins(h.Normal)
	var i int
	var upTo int64 = h.Normal[bins[0]] // normal pixels in bins[0..i]
	for k := range PROThresholds {
		r := thresholdRank(k, n)
		for upTo <= r {
			i++
			upTo += h.Normal[bins[i]]
		}
		t.Bins[k] = bins[i]
		t.FPR[k] = float64(n-upTo) / float64(n)
		t.Values[k] = binTop(bins[i], h.Bits)
	}
	return t, nil
}

// check reports whether t is usable.
func (t Thresholds) check() error {
	if t.Bits < 0 || t.Bits > 23 || len(t.Bins) != PROThresholds || len(t.FPR) != PROThresholds {
		return fmt.Errorf("metrics: thresholds not made by Histogram.Thresholds")
	}
	return nil
}

// exceeded returns how many thresholds score s exceeds.
func (t Thresholds) exceeded(s float32) int {
	b := binOf(s, t.Bits)
	return sort.Search(len(t.Bins), func(k int) bool { return t.Bins[k] >= b })
}

// PRO accumulates the per-region overlap of the AU-PRO curve for fixed
// Thresholds, image by image: it is exact given the thresholds and
// mergeable. The zero value is an empty accumulator.
type PRO struct {
	// Regions counts the ground-truth regions seen.
	Regions int64
	// Overlap[k] sums, over the regions, the share of the region's pixels
	// that exceed threshold k; nil while Regions is 0.
	Overlap []float64
}

// Add adds the regions of m (the 8-connected components of its mask).
func (p *PRO) Add(t Thresholds, m Map) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := m.validate(); err != nil {
		return err
	}
	labels, n, err := Regions(m.Rows, m.Cols, m.Mask)
	if err != nil || n == 0 {
		return err
	}
	// Group the region pixels by region (a counting sort on the label),
	// each stored as the number of thresholds it exceeds, so that memory
	// stays linear in pixels even for masks with very many regions.
	const K = PROThresholds
	start := make([]int, n+1)
	for _, l := range labels {
		if l != 0 {
			start[l]++
		}
	}
	for r := 1; r <= n; r++ {
		start[r] += start[r-1]
	}
	exceeded := make([]uint8, start[n])
	next := slices.Clone(start[:n])
	for i, l := range labels {
		if l != 0 {
			exceeded[next[l-1]] = uint8(t.exceeded(m.Scores[i]))
			next[l-1]++
		}
	}
	if p.Overlap == nil {
		p.Overlap = make([]float64, K)
	}
	for r := range n {
		var hist [K + 1]int64 // hist[e]: the region's pixels exceeding exactly e thresholds
		for _, e := range exceeded[start[r]:start[r+1]] {
			hist[e]++
		}
		size := float64(start[r+1] - start[r])
		var above int64 // pixels exceeding threshold k: those exceeding more than k thresholds
		for k := K - 1; k >= 0; k-- {
			above += hist[k+1]
			p.Overlap[k] += float64(above) / size
		}
	}
	p.Regions += int64(n)
	return nil
}

// Merge adds the regions of o to p.
func (p *PRO) Merge(o PRO) error {
	if o.Regions == 0 {
		return nil
	}
	if len(o.Overlap) != PROThresholds || (p.Overlap != nil && len(p.Overlap) != PROThresholds) {
		return fmt.Errorf("metrics: PRO accumulators with %d and %d thresholds", len(p.Overlap), len(o.Overlap))
	}
	if p.Overlap == nil {
		p.Overlap = make([]float64, PROThresholds)
	}
	for k, v := range o.Overlap {
		p.Overlap[k] += v
	}
	p.Regions += o.Regions
	return nil
}

// AUPRO returns the AU-PRO up to fprLimit of the regions accumulated in p
// with thresholds t. It fails when p has no regions.
func (t Thresholds) AUPRO(p PRO, fprLimit float64) (float64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	if p.Regions == 0 || len(p.Overlap) != PROThresholds {
		return 0, fmt.Errorf("metrics: AU-PRO needs anomalous regions, have %d", p.Regions)
	}
	pro := make([]float64, PROThresholds)
	for k, v := range p.Overlap {
		pro[k] = v / float64(p.Regions)
	}
	return integratePRO(t.FPR, pro, fprLimit)
}
