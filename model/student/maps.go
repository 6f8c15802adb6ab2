package student

import (
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/multiad/multiad/model/nn"
)

// Fusion combines the three upsampled distance maps.
type Fusion string

// Fusions.
const (
	FuseSum     Fusion = "sum"     // d4 + d8 + d16
	FuseProduct Fusion = "product" // d4 · d8 · d16
)

// MapConfig configures the anomaly map.
type MapConfig struct {
	// Fuse is how per-scale maps are combined ("sum" by default).
	Fuse Fusion
	// Sigma is the Gaussian blur's standard deviation in pixels of the
	// S×S map (0: no blur).
	Sigma float64
	// Weights scale the per-scale maps (strides 4, 8, 16) before a sum
	// fusion; with product fusion, scales of weight 0 are left out. All
	// zero (the default) means weight 1 for every scale.
	Weights [3]float64
	// Pool is, per scale, the odd width of a box window over which student
	// and teacher features are both averaged before the cosine distance
	// (0 or 1: none). The distance of local means cancels per-location
	// error that a blur of the distances keeps.
	Pool [3]int
}

// PoolRadius returns scale i's box radius: (Pool[i]−1)/2, 0 for none.
func (m MapConfig) PoolRadius(i int) int { return max(m.Pool[i]-1, 0) / 2 }

// ScaleWeights returns the effective per-scale weights.
func (m MapConfig) ScaleWeights() [3]float64 {
	if m.Weights == ([3]float64{}) {
		return [3]float64{1, 1, 1}
	}
	return m.Weights
}

// DefaultSigma is the blur σ at image size S: 4 px at 256, scaled linearly.
func DefaultSigma(S int) float64 { return 4 * float64(S) / 256 }

// Validate checks the map configuration.
func (m MapConfig) Validate() error {
	switch m.Fuse {
	case FuseSum, FuseProduct:
	default:
		return fmt.Errorf("student: unknown fusion %q (want sum or product)", m.Fuse)
	}
	if m.Sigma < 0 || m.Sigma > 64 {
		return fmt.Errorf("student: blur sigma %g out of range [0, 64]", m.Sigma)
	}
	for i, w := range m.Weights {
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return fmt.Errorf("student: weight %g of scale %d is not a finite number ≥ 0", w, i)
		}
	}
	for i, p := range m.Pool {
		if p < 0 || p > 15 || p > 1 && p%2 == 0 {
			return fmt.Errorf("student: feature pooling window %d of scale %d is not 0 or an odd number from 1 to 15", p, i)
		}
	}
	return nil
}

// AnomalyMap computes the anomaly map [N, S, S] and image scores [N] (max of
// the map) from student and teacher features (NHWC, any scale): per scale
// 1 − cos over channels (of box-averaged features where MapConfig.Pool asks),
// bilinear upsampling to S×S (half-pixel), fusion, Gaussian blur. Scales of
// weight 0 are not computed.
func AnomalyMap(s, t [3]*Node, S int, mc MapConfig) (amap, score *Node) {
	var fused *Node
	w := mc.ScaleWeights()
	for i := range s {
		if w[i] == 0 {
			continue
		}
		r := mc.PoolRadius(i)
		d := nn.Upsample(nn.CosineDistance(nn.BoxPool(s[i], r), nn.BoxPool(t[i], r)), S, S)
		if mc.Fuse != FuseProduct && w[i] != 1 {
			d = MulScalar(d, w[i])
		}
		switch {
		case fused == nil:
			fused = d
		case mc.Fuse == FuseProduct:
			fused = Mul(fused, d)
		default:
			fused = Add(fused, d)
		}
	}
	amap = fused
	if mc.Sigma > 0 {
		amap = nn.Blur(fused, mc.Sigma)
	}
	return amap, ReduceMax(amap, 1, 2)
}

// KDLoss is Σ_scales 0.5·mean over pixels of ‖n(S) − n(T)‖², n = L2
// normalisation over channels.
func KDLoss(s, t [3]*Node) *Node { return KDLossHard(s, t, 0) }

// KDLossHard is KDLoss with hard-feature mining: with hard > 0, each scale's
// loss is the mean over the pixels whose squared distance is at least
// mean + hard·std of that scale's distances in the batch (a constant
// threshold: no gradient flows through it), so that training concentrates on
// the normal regions the student matches worst — those set the image score,
// the map's maximum. The threshold is clamped to the batch's largest
// distance, so the hardest pixel always trains. hard ≤ 0 is the plain loss.
func KDLossHard(s, t [3]*Node, hard float64) *Node {
	var loss *Node
	for i := range s {
		diff := Sub(nn.NormalizeChannels(s[i]), nn.NormalizeChannels(t[i]))
		d := ReduceSum(Square(diff), -1) // [N, H, W]
		var l *Node
		if hard > 0 {
			sd := StopGradient(d)
			mean := ReduceAllMean(sd)
			std := Sqrt(ReduceAllMean(Square(Sub(sd, mean))))
			// Clamped to the batch maximum so that at least one pixel
			// always trains (with a large hard and a light tail, no pixel
			// may reach mean + hard·std, and the loss would be 0).
			thr := Min(Add(mean, MulScalar(std, hard)), ReduceAllMax(sd))
			mask := ConvertDType(GreaterOrEqual(sd, thr), d.DType())
			l = Div(ReduceAllSum(Mul(d, mask)), Max(ReduceAllSum(mask), OnesLike(mean)))
			l = MulScalar(l, 0.5)
		} else {
			l = MulScalar(ReduceAllMean(d), 0.5)
		}
		if loss == nil {
			loss = l
		} else {
			loss = Add(loss, l)
		}
	}
	return loss
}

// BCEWithLogits is the mean binary cross-entropy of logits against a
// constant label (1 real, 0 fake): softplus(−z) or softplus(z).
func BCEWithLogits(logits *Node, real bool) *Node {
	if real {
		return ReduceAllMean(Softplus(Neg(logits)))
	}
	return ReduceAllMean(Softplus(logits))
}
