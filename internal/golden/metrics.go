// Package golden loads the shared reference values that tests compare
// against (shared/data/golden), so that every package reads them one way.
package golden

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/multiad/multiad/internal/shared"
)

// BinaryCase is an image-level case: labels and scores with scikit-learn's
// metrics.
type BinaryCase struct {
	Name             string    `json:"name"`
	Labels           []int     `json:"labels"`
	Scores           []float64 `json:"scores"`
	AUROC            float64   `json:"auroc"`
	AveragePrecision float64   `json:"average_precision"`
	F1Max            float64   `json:"f1_max"`
	F1MaxThreshold   float64   `json:"f1_max_threshold"`
}

// AUPROCase is a pixel-level case: masks and maps with the MVTec AD AU-PRO
// (scikit-image regions) and scikit-learn's pixel AUROC.
type AUPROCase struct {
	Name       string        `json:"name"`
	Masks      [][][]uint8   `json:"masks"`
	Maps       [][][]float64 `json:"maps"`
	FPRLimit   float64       `json:"fpr_limit"`
	AUPRO      float64       `json:"aupro_mvtec"`
	PixelAUROC float64       `json:"pixel_auroc"`
}

// Metrics mirrors shared/data/golden/metrics.json (scikit-learn 1.2.1,
// scikit-image 0.19.3).
type Metrics struct {
	BinaryCases []BinaryCase `json:"binary_cases"`
	AUPROCases  []AUPROCase  `json:"aupro_cases"`
}

// LoadMetrics reads metrics.json from the shared folder; it fails t when the
// file is missing, malformed or has no cases of either kind.
func LoadMetrics(t testing.TB) Metrics {
	t.Helper()
	b, err := os.ReadFile(shared.MustPath(t, "data", "golden", "metrics.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g Metrics
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("golden metrics.json: %v", err)
	}
	if len(g.BinaryCases) == 0 || len(g.AUPROCases) == 0 {
		t.Fatalf("golden metrics.json has %d binary and %d AU-PRO cases", len(g.BinaryCases), len(g.AUPROCases))
	}
	return g
}
