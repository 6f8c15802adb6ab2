// Package metrics computes anomaly detection metrics: exact image-level
// ranking metrics (AUROC, average precision, F1-max, ROC and PR curves) as
// defined by scikit-learn, exact pixel-level AUROC and AU-PRO as defined by
// the MVTec AD evaluation, and mergeable accumulators (Histogram, PRO) that
// compute the pixel metrics over data too large to hold in memory.
//
// Every function returns an error, never panics, on malformed input: length
// mismatches, labels other than 0 and 1, NaN scores, or data that leaves the
// metric undefined (a single class).
package metrics

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// curve is the cumulative confusion counts at every distinct score, as
// scikit-learn's _binary_clf_curve: Thresholds holds the distinct scores in
// decreasing order and TP[i], FP[i] count the positives and negatives with
// score >= Thresholds[i].
type curve struct {
	Thresholds []float64
	TP, FP     []int64
	P, N       int64 // total positives and negatives
}

// binaryCurve validates labels and scores and builds their curve in
// O(n log n).
func binaryCurve(labels []int, scores []float64) (curve, error) {
	var c curve
	if len(labels) != len(scores) {
		return c, fmt.Errorf("metrics: %d labels but %d scores", len(labels), len(scores))
	}
	if len(labels) == 0 {
		return c, fmt.Errorf("metrics: no samples")
	}
	type sample struct {
		score float64
		pos   bool
	}
	samples := make([]sample, len(scores))
	for i, l := range labels {
		if l != 0 && l != 1 {
			return c, fmt.Errorf("metrics: label %d at index %d is not 0 or 1", l, i)
		}
		if math.IsNaN(scores[i]) {
			return c, fmt.Errorf("metrics: score at index %d is NaN", i)
		}
		samples[i] = sample{scores[i], l == 1}
		if l == 1 {
			c.P++
		} else {
			c.N++
		}
	}
	slices.SortFunc(samples, func(a, b sample) int { return cmp.Compare(b.score, a.score) })
	var tp, fp int64
	for i, s := range samples {
		if s.pos {
			tp++
		} else {
			fp++
		}
		if i+1 < len(samples) && samples[i+1].score == s.score {
			continue // the next sample ties: one threshold for the whole group
		}
		c.Thresholds = append(c.Thresholds, s.score)
		c.TP = append(c.TP, tp)
		c.FP = append(c.FP, fp)
	}
	return c, nil
}

// needBoth reports an error unless the curve has both classes.
func (c curve) needBoth(metric string) error {
	if c.P == 0 || c.N == 0 {
		return fmt.Errorf("metrics: %s is undefined with %d positives and %d negatives", metric, c.P, c.N)
	}
	return nil
}

// AUROC returns the area under the ROC curve of scores for binary labels
// (1 = anomalous), as scikit-learn's roc_auc_score: tied scores count one
// half. It fails unless both classes are present.
func AUROC(labels []int, scores []float64) (float64, error) {
	c, err := binaryCurve(labels, scores)
	if err != nil {
		return 0, err
	}
	if err := c.needBoth("AUROC"); err != nil {
		return 0, err
	}
	// Trapezoids over the (FP, TP) steps: each tie group contributes
	// dFP*(TP_prev+TP)/2, so the sum is twice the Mann-Whitney U.
	var twiceU float64
	var tp0, fp0 int64
	for i := range c.TP {
		twiceU += float64(c.FP[i]-fp0) * float64(c.TP[i]+tp0)
		tp0, fp0 = c.TP[i], c.FP[i]
	}
	return twiceU / (2 * float64(c.P) * float64(c.N)), nil
}

// AveragePrecision returns scikit-learn's average_precision_score: the sum
// over decreasing thresholds of (R_n - R_{n-1}) * P_n, a step-wise area
// under the precision-recall curve without interpolation. It fails when
// there are no positives.
func AveragePrecision(labels []int, scores []float64) (float64, error) {
	c, err := binaryCurve(labels, scores)
	if err != nil {
		return 0, err
	}
	if c.P == 0 {
		return 0, fmt.Errorf("metrics: average precision is undefined without positives")
	}
	var ap float64
	var tp0 int64
	for i := range c.TP {
		if c.TP[i] != tp0 {
			ap += float64(c.TP[i]-tp0) / float64(c.P) * float64(c.TP[i]) / float64(c.TP[i]+c.FP[i])
		}
		tp0 = c.TP[i]
	}
	return ap, nil
}

// F1Max returns the largest F1 = 2PR/(P+R) over the points of the
// precision-recall curve (every distinct score as threshold, predicting
// anomalous when score >= threshold; the final point P=1, R=0 excluded),
// and the threshold that attains it; among equal maxima the lowest
// threshold wins, as numpy's argmax over scikit-learn's ascending
// thresholds. F1 is 0 where P+R is 0. It fails when there are no positives.
func F1Max(labels []int, scores []float64) (f1, threshold float64, err error) {
	c, err := binaryCurve(labels, scores)
	if err != nil {
		return 0, 0, err
	}
	if c.P == 0 {
		return 0, 0, fmt.Errorf("metrics: F1 is undefined without positives")
	}
	f1 = -1
	for i := range c.TP { // decreasing thresholds: >= keeps the lowest on ties
		p := float64(c.TP[i]) / float64(c.TP[i]+c.FP[i])
		r := float64(c.TP[i]) / float64(c.P)
		v := 0.0
		if p+r > 0 {
			v = 2 * p * r / (p + r)
		}
		if v >= f1 {
			f1, threshold = v, c.Thresholds[i]
		}
	}
	return f1, threshold, nil
}

// ROCPoint is one point of a ROC curve: the false and true positive rates
// when predicting anomalous for score >= Threshold.
type ROCPoint struct {
	FPR, TPR, Threshold float64
}

// ROCCurve returns the ROC curve as scikit-learn's roc_curve with
// drop_intermediate=False: a first point (0, 0) with threshold +Inf, then
// one point per distinct score in decreasing order, ending at (1, 1). It
// fails unless both classes are present.
func ROCCurve(labels []int, scores []float64) ([]ROCPoint, error) {
	c, err := binaryCurve(labels, scores)
	if err != nil {
		return nil, err
	}
	if err := c.needBoth("the ROC curve"); err != nil {
		return nil, err
	}
	pts := make([]ROCPoint, 0, len(c.TP)+1)
	pts = append(pts, ROCPoint{0, 0, math.Inf(1)})
	for i := range c.TP {
		pts = append(pts, ROCPoint{float64(c.FP[i]) / float64(c.N), float64(c.TP[i]) / float64(c.P), c.Thresholds[i]})
	}
	return pts, nil
}

// PRPoint is one point of a precision-recall curve when predicting
// anomalous for score >= Threshold.
type PRPoint struct {
	Precision, Recall, Threshold float64
}

// PRCurve returns the precision-recall curve as scikit-learn's
// precision_recall_curve: one point per distinct score in increasing order,
// then the final point (precision 1, recall 0) with threshold +Inf. It fails
// when there are no positives.
func PRCurve(labels []int, scores []float64) ([]PRPoint, error) {
	c, err := binaryCurve(labels, scores)
	if err != nil {
		return nil, err
	}
	if c.P == 0 {
		return nil, fmt.Errorf("metrics: the precision-recall curve is undefined without positives")
	}
	pts := make([]PRPoint, 0, len(c.TP)+1)
	for i := len(c.TP) - 1; i >= 0; i-- {
		pts = append(pts, PRPoint{
			Precision: float64(c.TP[i]) / float64(c.TP[i]+c.FP[i]),
			Recall:    float64(c.TP[i]) / float64(c.P),
			Threshold: c.Thresholds[i],
		})
	}
	return append(pts, PRPoint{1, 0, math.Inf(1)}), nil
}
