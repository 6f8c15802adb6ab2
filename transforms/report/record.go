// Package report writes a scoring run's outputs: scores.jsonl,
// failures.jsonl, heatmap overlays, summary.json and a self-contained
// report.html, all staged in a temporary folder and committed into place
// only when the run succeeds.
package report

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

// File names in the output folder.
const (
	ScoresFile   = "scores.jsonl"
	FailuresFile = "failures.jsonl"
	SummaryFile  = "summary.json"
	ReportFile   = "report.html"
	HeatmapDir   = "heatmaps"
	MaskDir      = "masks"
	RawMapDir    = "maps"
	// digestFile is the pipeline's hand-over to the driver; it is removed
	// before the commit.
	digestFile = "_digest.json"
)

// Heatmap modes: which images get a heatmap overlay.
const (
	HeatmapsNone      = "none"
	HeatmapsAnomalous = "anomalous"
	HeatmapsAll       = "all"
)

// ParseHeatmaps checks a heatmap mode ("" means none).
func ParseHeatmaps(s string) (string, error) {
	switch s {
	case "", HeatmapsNone:
		return HeatmapsNone, nil
	case HeatmapsAnomalous, HeatmapsAll:
		return s, nil
	}
	return "", fmt.Errorf("report: heatmap mode %q: want none, anomalous or all", s)
}

// Record is one line of scores.jsonl.
type Record struct {
	URI   string  `json:"uri"`
	Slice *int    `json:"slice,omitempty"`
	Frame *int    `json:"frame,omitempty"`
	Score float64 `json:"score"`
	// NormalizedScore is Score in [0, 1] with the threshold at 0.5
	// (bundle.Scores.Normalize).
	NormalizedScore float64           `json:"normalized_score"`
	Anomalous       bool              `json:"anomalous"`
	Label           *int              `json:"label,omitempty"`
	Group           string            `json:"group,omitempty"`
	Meta            map[string]string `json:"meta,omitempty"`
	Heatmap         string            `json:"heatmap,omitempty"`
	// Mask is the predicted mask PNG (flagged images, --masks) and RawMap
	// the 16-bit map PNG (--raw-maps), relative to the output folder.
	Mask   string `json:"mask,omitempty"`
	RawMap string `json:"raw_map,omitempty"`
	// Study and Series are the DICOM study and series identifiers (UIDs,
	// or their salted hashes with --hash-uids); empty for other formats,
	// whose file is their study.
	Study  string `json:"study,omitempty"`
	Series string `json:"series,omitempty"`
	// Identity appears only with --include-phi.
	Identity *Identity `json:"identity,omitempty"`
}

// Identity is the DICOM patient identity written with --include-phi.
type Identity struct {
	PatientName      string `json:"patient_name,omitempty"`
	PatientID        string `json:"patient_id,omitempty"`
	PatientBirthDate string `json:"patient_birth_date,omitempty"`
	AccessionNumber  string `json:"accession_number,omitempty"`
}

// FailureRecord is one line of failures.jsonl. A failure's index is
// written as slice (a Failure does not know whether it was a frame).
type FailureRecord struct {
	URI   string `json:"uri"`
	Slice *int   `json:"slice,omitempty"`
	Frame *int   `json:"frame,omitempty"`
	Error string `json:"error"`
}

// phiColumns are manifest columns that name a person directly; they are
// dropped from scores.jsonl unless PHI is included. Other manifest columns
// (e.g. "patient", a pseudonymous study ID in multiad's data) are the
// user's own and are kept.
var phiColumns = map[string]bool{
	"name": true, "patient_name": true, "patientname": true,
	"birth_date": true, "birthdate": true, "patient_birth_date": true, "patientbirthdate": true, "dob": true,
	"patient_id": true, "patientid": true, "mrn": true,
	"accession": true, "accession_number": true, "accessionnumber": true,
}

// IsPHIColumn reports whether a manifest column is withheld without --include-phi.
func IsPHIColumn(name string) bool {
	return phiColumns[strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), " ", "_"))]
}

// indexFields returns the slice/frame pointers for an index.
func indexFields(index int, kind string) (slice, frame *int) {
	if index < 0 {
		return nil, nil
	}
	i := index
	if kind == "frame" {
		return nil, &i
	}
	return &i, nil
}

// NewRecord builds the scores.jsonl line of a result.
func NewRecord(r score.Result, heatmap string, includePHI bool) Record {
	it := r.Item
	rec := Record{URI: it.URI, Score: r.Score, NormalizedScore: r.Normalized, Anomalous: r.Anomalous, Group: it.Group, Heatmap: heatmap,
		Study: it.Study, Series: it.Series}
	rec.Slice, rec.Frame = indexFields(it.Index, it.IndexKind)
	if it.Label >= 0 {
		l := it.Label
		rec.Label = &l
	}
	for k, v := range it.Meta {
		if !includePHI && IsPHIColumn(k) {
			continue
		}
		if rec.Meta == nil {
			rec.Meta = map[string]string{}
		}
		rec.Meta[k] = v
	}
	if includePHI && r.Identity != nil {
		rec.Identity = identityOf(*r.Identity)
	}
	return rec
}

// IdentityOf returns the --include-phi identity record of id, or nil when
// id holds no patient identity.
func IdentityOf(id pixels.Identity) *Identity { return identityOf(id) }

func identityOf(id pixels.Identity) *Identity {
	out := &Identity{PatientName: id.PatientName, PatientID: id.PatientID,
		PatientBirthDate: id.PatientBirthDate, AccessionNumber: id.AccessionNumber}
	if *out == (Identity{}) {
		return nil
	}
	return out
}

// NewFailureRecord builds the failures.jsonl line of a failure.
func NewFailureRecord(f read.Failure) FailureRecord {
	rec := FailureRecord{URI: f.URI, Error: f.Error}
	if f.Index >= 0 {
		i := f.Index
		rec.Slice = &i
	}
	return rec
}

// WritesHeatmap reports whether Write writes the heatmap of a result under
// a --heatmaps mode.
func WritesHeatmap(mode string, anomalous bool) bool {
	return mode == HeatmapsAll || mode == HeatmapsAnomalous && anomalous
}

// HeatmapName returns the heatmap file name (relative to the output folder)
// of an item: readable, and unique through a hash of the URI and index.
func HeatmapName(it read.Item) string { return HeatmapDir + "/" + FileName(it) }

// MaskName returns the predicted mask's file name of an item.
func MaskName(it read.Item) string { return MaskDir + "/" + FileName(it) }

// RawMapName returns the 16-bit map's file name of an item.
func RawMapName(it read.Item) string { return RawMapDir + "/" + FileName(it) }

// FileName returns the base name of an item's output PNGs: the input's
// base name (safe characters only), its index, and a hash of the whole
// URI and index, so that a/x.png and b/x.png never share a name.
func FileName(it read.Item) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", it.URI, it.Index)))
	base := path.Base(it.URI)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	var b strings.Builder
	for _, c := range base {
		if c < 128 && (c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 60 {
			break
		}
	}
	name := b.String()
	if it.Index >= 0 {
		name += fmt.Sprintf("_%d", it.Index)
	}
	return name + "_" + hex.EncodeToString(h[:4]) + ".png"
}
