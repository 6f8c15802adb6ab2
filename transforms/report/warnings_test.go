package report

import (
	"strings"
	"testing"
)

func TestDomainWarningsFlaggedShare(t *testing.T) {
	for _, c := range []struct {
		name           string
		flagged, total int
		labelled       *Metrics
		want           string // "" for no flagged-share warning
	}{
		{"unlabelled, half", 50, 100, nil, ""},
		{"unlabelled, most", 51, 100, nil, "51 of 100 images (51%) are flagged"},
		// The tiles' test set: 392 of 632 defective, 323 flagged: no normal needs to be flagged.
		{"labelled, mostly defects", 323, 632, &Metrics{Count: 632, Positives: 392}, ""},
		// 240 normals; 392 + 121 flagged means at least 121 normals (50.4%).
		{"labelled, flagged normals", 513, 632, &Metrics{Count: 632, Positives: 392}, "at least 121 of the 240 images labelled normal (50%)"},
		{"labelled, exactly half the normals", 512, 632, &Metrics{Count: 632, Positives: 392}, ""},
		// 10 unlabelled images may be the flagged ones.
		{"partly labelled", 80, 100, &Metrics{Count: 90, Positives: 30}, "at least 40 of the 60 images labelled normal"},
		{"partly labelled, unlabelled explain it", 60, 100, &Metrics{Count: 90, Positives: 30}, ""},
		{"labels without normals", 100, 100, &Metrics{Count: 100, Positives: 100}, ""},
		{"empty metrics fall back", 60, 100, &Metrics{}, "60 of 100 images (60%) are flagged"},
	} {
		w := DomainWarnings(nil, nil, c.flagged, c.total, c.labelled)
		got := strings.Join(w, "\n")
		if c.want == "" && len(w) != 0 || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: warnings %q, want %q", c.name, got, c.want)
		}
	}
}
