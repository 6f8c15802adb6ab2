package score

import (
	"context"
	"testing"
)

// TestProgress: Progress returns what noteProgress has counted, and a time
// since the first result.
func TestProgress(t *testing.T) {
	n0, f0, _ := Progress()
	noteProgress(context.Background(), 3, 1)
	noteProgress(context.Background(), 2, 0)
	n, f, el := Progress()
	if n-n0 != 5 || f-f0 != 1 || el <= 0 {
		t.Errorf("Progress after 5 scored and 1 failed: %d, %d, %v (before: %d, %d)", n, f, el, n0, f0)
	}
}
