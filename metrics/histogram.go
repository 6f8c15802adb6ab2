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
// anomalous pixels, with the per-region overlap of the anomalous ones: one
// pass over maps of any number of pixels gives the pixel AUROC and the MVTec
// AD AU-PRO. Its memory is bounded by the number of distinct bins in use (at
// most 2^Bits per power of two spanned by the scores), not by the number of
// pixels.
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
	Bits int
	// Normal counts the normal pixels, nearly all of a map's, per bin: runs
	// sorted by bin, so that adding a map merges its sorted runs in one
	// linear pass instead of one map update per distinct bin. Each Add or
	// Merge replaces it, writing into the slices it held before the last
	// one: slices read from it stay valid through one more Add or Merge.
	Normal    Runs
	Anomalous map[uint32]int64
	// Regions counts the ground-truth regions (8-connected components of
	// the masks) added.
	Regions int64
	// Overlap[b] sums, over the regions, the share of the region's pixels
	// that fall in bin b. Since AU-PRO thresholds are bins of normal-pixel
	// scores, the mean overlap at any threshold is a suffix sum of Overlap
	// over Regions: no second pass over the maps is needed.
	Overlap map[uint32]float64

	spare Runs // the buffer the next merge into Normal writes to
}

// Runs are pixel counts per bin: Counts[i] pixels fall in bin Bins[i]. Bins
// increase strictly and every count is positive.
type Runs struct {
	Bins   []uint32
	Counts []int64
}

// Len returns the number of bins in use.
func (r Runs) Len() int { return len(r.Bins) }

// Total returns the number of pixels counted.
func (r Runs) Total() int64 {
	var n int64
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// valid reports whether r keeps the Runs invariants.
func (r Runs) valid() bool {
	if len(r.Bins) != len(r.Counts) {
		return false
	}
	for i, c := range r.Counts {
		if c <= 0 || i > 0 && r.Bins[i] <= r.Bins[i-1] {
			return false
		}
	}
	return true
}

// mergeRuns writes the union of a and b, counts of a bin in both summed,
// to dst's buffers and returns it.
func mergeRuns(dst, a, b Runs) Runs {
	n := len(a.Bins) + len(b.Bins)
	bins, counts := slices.Grow(dst.Bins[:0], n), slices.Grow(dst.Counts[:0], n)
	i, j := 0, 0
	for i < len(a.Bins) && j < len(b.Bins) {
		switch x, y := a.Bins[i], b.Bins[j]; {
		case x < y:
			bins, counts = append(bins, x), append(counts, a.Counts[i])
			i++
		case y < x:
			bins, counts = append(bins, y), append(counts, b.Counts[j])
			j++
		default:
			bins, counts = append(bins, x), append(counts, a.Counts[i]+b.Counts[j])
			i++
			j++
		}
	}
	bins, counts = append(bins, a.Bins[i:]...), append(counts, a.Counts[i:]...)
	bins, counts = append(bins, b.Bins[j:]...), append(counts, b.Counts[j:]...)
	return Runs{Bins: bins, Counts: counts}
}

// addNormal adds r to h's normal counts.
func (h *Histogram) addNormal(r Runs) {
	if r.Len() == 0 {
		return
	}
	h.Normal, h.spare = mergeRuns(h.spare, h.Normal, r), h.Normal
}

// NewHistogram returns an empty histogram keeping bits (0..23) mantissa
// bits of every score.
func NewHistogram(bits int) (*Histogram, error) {
	if bits < 0 || bits > 23 {
		return nil, fmt.Errorf("metrics: histogram bits %d outside 0..23", bits)
	}
	return &Histogram{Bits: bits, Anomalous: map[uint32]int64{}, Overlap: map[uint32]float64{}}, nil
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

// check reports whether h is usable. Only a full check reads every normal
// run: AddMap, which keeps the runs valid, checks their lengths alone.
func (h *Histogram) check(full bool) error {
	if h == nil || h.Bits < 0 || h.Bits > 23 {
		return fmt.Errorf("metrics: histogram not made by NewHistogram")
	}
	if len(h.Normal.Bins) != len(h.Normal.Counts) || full && !h.Normal.valid() {
		return fmt.Errorf("metrics: histogram's normal runs are not sorted positive counts")
	}
	if h.Anomalous == nil {
		h.Anomalous = map[uint32]int64{}
	}
	if h.Overlap == nil {
		h.Overlap = map[uint32]float64{}
	}
	return nil
}

// Add counts every pixel of m and the overlap of its regions.
func (h *Histogram) Add(m Map) error { return AddMap(m, h) }

// AddMap adds m to every histogram of hs (all of the same Bits), computing
// its bins and regions once.
func AddMap(m Map, hs ...*Histogram) error {
	if len(hs) == 0 {
		return nil
	}
	for _, h := range hs {
		if err := h.check(false); err != nil {
			return err
		}
		if h.Bits != hs[0].Bits {
			return fmt.Errorf("metrics: cannot add to histograms of %d and %d bits at once", hs[0].Bits, h.Bits)
		}
	}
	if err := m.validate(); err != nil {
		return err
	}
	labels, n, err := Regions(m.Rows, m.Cols, m.Mask)
	if err != nil {
		return err
	}
	bits := hs[0].Bits
	var weight []float64 // weight[r-1]: 1 / size of region r
	if n > 0 {
		weight = make([]float64, n)
		for _, l := range labels {
			if l != 0 {
				weight[l-1]++
			}
		}
		for r := range weight {
			weight[r] = 1 / weight[r]
		}
	}
	// Normal pixels, nearly all of a map, are counted per distinct bin
	// (normalRuns), and the runs merged into each histogram.
	normal := make([]uint32, 0, len(m.Scores))
	lo, hi := ^uint32(0), uint32(0) // the normal pixels' lowest and highest bin
	for i, s := range m.Scores {
		b := binOf(s, bits)
		if l := labels[i]; l == 0 {
			normal = append(normal, b)
			lo, hi = min(lo, b), max(hi, b)
		} else {
			for _, h := range hs {
				h.Anomalous[b]++
				h.Overlap[b] += weight[l-1]
			}
		}
	}
	runs := normalRuns(normal, lo, hi, 9+bits)
	for _, h := range hs {
		h.addNormal(runs)
		h.Regions += int64(n)
	}
	return nil
}

// denseSpan is how many bins per pixel normalRuns counts in an array
// rather than sorting: a map's scores span a few powers of two, so at the
// default resolution its bins fit in an array a few times its size.
const denseSpan = 4

// normalRuns counts bins, each of at most width significant bits and all
// within [lo, hi], per distinct bin. Where the span is at most denseSpan
// bins per value it counts them in an array indexed by bin; otherwise it
// sorts them (sortBins, which reorders bins) and counts the runs.
func normalRuns(bins []uint32, lo, hi uint32, width int) Runs {
	var r Runs
	if len(bins) == 0 {
		return r
	}
	if span := uint64(hi-lo) + 1; span <= uint64(denseSpan*len(bins)) && len(bins) <= math.MaxInt32 {
		counts := make([]int32, span)
		for _, b := range bins {
			counts[b-lo]++
		}
		for i, c := range counts {
			if c != 0 {
				r.Bins, r.Counts = append(r.Bins, lo+uint32(i)), append(r.Counts, int64(c))
			}
		}
		return r
	}
	sortBins(bins, width)
	for i := 0; i < len(bins); {
		j := i + 1
		for j < len(bins) && bins[j] == bins[i] {
			j++
		}
		r.Bins, r.Counts = append(r.Bins, bins[i]), append(r.Counts, int64(j-i))
		i = j
	}
	return r
}

// sortBins sorts bins of at most width significant bits in place: a
// least-significant-digit radix sort, 8 bits per pass.
func sortBins(bins []uint32, width int) {
	if len(bins) < 2 {
		return
	}
	tmp := make([]uint32, len(bins))
	src, dst := bins, tmp
	for shift := 0; shift < width; shift += 8 {
		var count [257]int
		for _, b := range src {
			count[(b>>shift)&0xff+1]++
		}
		for d := 1; d < len(count); d++ {
			count[d] += count[d-1]
		}
		for _, b := range src {
			d := (b >> shift) & 0xff
			dst[count[d]] = b
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &bins[0] {
		copy(bins, src)
	}
}

// Merge adds the counts of o, which must have the same Bits, to h.
func (h *Histogram) Merge(o *Histogram) error {
	if err := h.check(true); err != nil {
		return err
	}
	if err := o.check(true); err != nil {
		return err
	}
	if o.Bits != h.Bits {
		return fmt.Errorf("metrics: cannot merge histograms of %d and %d bits", h.Bits, o.Bits)
	}
	h.addNormal(o.Normal)
	for b, c := range o.Anomalous {
		h.Anomalous[b] += c
	}
	for b, v := range o.Overlap {
		h.Overlap[b] += v
	}
	h.Regions += o.Regions
	return nil
}

// Counts returns the number of normal and anomalous pixels counted.
func (h *Histogram) Counts() (normal, anomalous int64) {
	if h == nil {
		return 0, 0
	}
	normal = h.Normal.Total()
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
	if err := h.check(true); err != nil {
		return 0, err
	}
	n, p := h.Counts()
	if n == 0 || p == 0 {
		return 0, fmt.Errorf("metrics: pixel AUROC is undefined with %d anomalous and %d normal pixels", p, n)
	}
	// Walk the anomalous bins in order beside the normal runs.
	var twiceU float64
	var below int64 // normal pixels in lower bins
	i := 0
	for _, b := range sortedBins(h.Anomalous) {
		for i < h.Normal.Len() && h.Normal.Bins[i] < b {
			below += h.Normal.Counts[i]
			i++
		}
		var neg int64 // normal pixels in bin b
		if i < h.Normal.Len() && h.Normal.Bins[i] == b {
			neg = h.Normal.Counts[i]
		}
		twiceU += float64(h.Anomalous[b]) * float64(2*below+neg)
	}
	return twiceU / (2 * float64(p) * float64(n)), nil
}

// thresholds are the AU-PRO thresholds fixed by the normal pixels:
// threshold k is the bin of the normal-pixel score at rank
// floor(k*(n-1)/99), and a pixel exceeds it when its bin is higher.
type thresholds struct {
	// bins are the bins of the PROThresholds thresholds, non-decreasing.
	bins []uint32
	// fpr[k] is the share of normal pixels that exceed threshold k.
	fpr []float64
}

// thresholds returns the AU-PRO thresholds of the normal pixels counted;
// h must have normal pixels.
func (h *Histogram) thresholds() thresholds {
	n, _ := h.Counts()
	t := thresholds{bins: make([]uint32, PROThresholds), fpr: make([]float64, PROThresholds)}
	bins, counts := h.Normal.Bins, h.Normal.Counts
	var i int
	upTo := counts[0] // normal pixels in bins[0..i]
	for k := range PROThresholds {
		r := thresholdRank(k, n)
		for upTo <= r {
			i++
			upTo += counts[i]
		}
		t.bins[k] = bins[i]
		t.fpr[k] = float64(n-upTo) / float64(n)
	}
	return t
}

// AUPRO returns the AU-PRO up to fprLimit of the maps added: thresholds at
// the normal-pixel ranks of the exact AUPRO, and at each the mean over
// regions of the share of region pixels in a higher bin. It fails without
// normal pixels or without regions.
func (h *Histogram) AUPRO(fprLimit float64) (float64, error) {
	if err := h.check(true); err != nil {
		return 0, err
	}
	n, _ := h.Counts()
	if n == 0 || h.Regions == 0 {
		return 0, fmt.Errorf("metrics: AU-PRO needs normal pixels and anomalous regions, have %d and %d", n, h.Regions)
	}
	t := h.thresholds()
	// above[j]: the overlap summed over bins[j:], the bins in increasing order.
	bins := make([]uint32, 0, len(h.Overlap))
	for b := range h.Overlap {
		bins = append(bins, b)
	}
	slices.Sort(bins)
	above := make([]float64, len(bins)+1)
	for j := len(bins) - 1; j >= 0; j-- {
		above[j] = above[j+1] + h.Overlap[bins[j]]
	}
	pro := make([]float64, PROThresholds)
	for k, tb := range t.bins {
		j := sort.Search(len(bins), func(j int) bool { return bins[j] > tb })
		pro[k] = above[j] / float64(h.Regions)
	}
	return integratePRO(t.fpr, pro, fprLimit)
}
