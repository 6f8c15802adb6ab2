package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/evaluate"
	"github.com/multiad/multiad/transforms/score"
)

// Point is one scored image for the report's curves and histogram.
type Point struct {
	Score float64 `json:"s"`
	Label int     `json:"l"`
}

// GalleryEntry is one of the top-scoring images: its record, the image
// and its heatmap overlay as PNGs (at most galleryside pixels a side),
// the overlay with the ground-truth outline when Truth.
type GalleryEntry struct {
	Record Record `json:"record"`
	PNG    []byte `json:"png,omitempty"`
	Image  []byte `json:"image,omitempty"`
	Truth  bool   `json:"truth,omitempty"`
	// Rows and Cols are the original image size.
	Rows int `json:"rows,omitempty"`
	Cols int `json:"cols,omitempty"`
}

// gallerySide bounds the gallery pictures embedded in report.html.
const gallerySide = 400

// NewGalleryEntry renders a result for the report's gallery: the image
// and the heatmap at its own aspect, scaled to fit gallerySide before
// they are drawn (shrink), with the ground-truth mask's outline drawn on
// the heatmap where one exists.
func NewGalleryEntry(r score.Result, cal bundle.Scores) (GalleryEntry, error) {
	g, small := newGalleryEntry(r)
	err := g.draw(small, cal)
	return g, err
}

// newGalleryEntry returns r's gallery entry without its pictures, and r
// shrunk to the gallery's size for draw.
func newGalleryEntry(r score.Result) (GalleryEntry, score.Result) {
	g := GalleryEntry{Record: NewRecord(r, "", false)}
	g.Record.Meta = nil
	g.Rows, g.Cols = size(r)
	return g, shrink(r, gallerySide)
}

// draw renders the entry's pictures from small, its result shrunk to the
// gallery's size.
func (g *GalleryEntry) draw(small score.Result, cal bundle.Scores) error {
	if small.Map == nil {
		return nil
	}
	heat, err := Heatmap(small, cal)
	if err != nil {
		return err
	}
	if len(small.Truth) > 0 {
		DrawOutline(heat, small.Truth)
		g.Truth = true
	}
	if g.PNG, err = EncodePNG(heat); err != nil {
		return err
	}
	pic, err := Picture(small)
	if err != nil {
		return err
	}
	g.Image, err = EncodePNG(pic)
	return err
}

// MaxListedFailures is how many failed inputs summary digests and
// report.html list (failures.jsonl has them all).
const MaxListedFailures = 100

// Digest is what the pipeline hands to Finish: counts, every score, the
// gallery and the evaluation report.
type Digest struct {
	Inputs  int `json:"inputs"`
	Scored  int `json:"scored"`
	Failed  int `json:"failed"`
	Flagged int `json:"flagged"`
	// Domains counts the scored images by bundle.DomainOf.
	Domains map[string]int `json:"domains,omitempty"`
	// Failures are the first MaxListedFailures failures, in order.
	Failures []FailureRecord  `json:"failures,omitempty"`
	Points   []Point          `json:"points"`
	Gallery  []GalleryEntry   `json:"gallery"`
	Report   *evaluate.Report `json:"report,omitempty"`
	// Studies is the study step's digest, read by Finish (not part of
	// the pipeline's digest file).
	Studies *StudyDigest `json:"-"`
}

// Metrics are the metrics of summary.json; absent ones need labels or
// masks the run did not have.
type Metrics struct {
	Count            int      `json:"count"`
	Positives        int      `json:"positives"`
	ImageAUROC       *float64 `json:"image_auroc,omitempty"`
	ImageAP          *float64 `json:"image_ap,omitempty"`
	ImageF1Max       *float64 `json:"image_f1_max,omitempty"`
	ImageF1Threshold *float64 `json:"image_f1_threshold,omitempty"`
	PixelAUROC       *float64 `json:"pixel_auroc,omitempty"`
	AUPRO            *float64 `json:"aupro,omitempty"`
}

// MetricsOf converts evaluated metrics to their summary.json form.
func MetricsOf(m evaluate.Metrics) Metrics { return metricsOf(m) }

func metricsOf(m evaluate.Metrics) Metrics {
	return Metrics{Count: m.Count, Positives: m.Positives, ImageAUROC: m.ImageAUROC, ImageAP: m.ImageAP,
		ImageF1Max: m.ImageF1Max, ImageF1Threshold: m.ImageF1Threshold, PixelAUROC: m.PixelAUROC, AUPRO: m.AUPRO}
}

// Throughput is the run's speed.
type Throughput struct {
	Seconds         float64 `json:"seconds"`
	ImagesPerSecond float64 `json:"images_per_second"`
}

// Summary is summary.json.
type Summary struct {
	Input  string `json:"input"`
	Output string `json:"output"`
	Inputs int    `json:"inputs"`
	Scored int    `json:"scored"`
	Failed int    `json:"failed"`
	// Flagged is the number of scored images above the threshold.
	Flagged    int                `json:"flagged"`
	Threshold  float64            `json:"threshold"`
	Model      map[string]any     `json:"model"`
	Heatmaps   string             `json:"heatmaps"`
	GroupBy    string             `json:"group_by,omitempty"`
	Started    time.Time          `json:"started"`
	Throughput Throughput         `json:"throughput"`
	Metrics    *Metrics           `json:"metrics,omitempty"`
	ByGroup    map[string]Metrics `json:"by_group,omitempty"`
	// Studies summarizes the series and studies (package study), when
	// the pipeline grouped them.
	Studies *StudySummary `json:"studies,omitempty"`
	// Incremental describes a run with --state: what the ledger let it skip.
	Incremental *Incremental `json:"incremental,omitempty"`
	// Domains counts the scored images by kind, channels and bit depth
	// (bundle.DomainOf).
	Domains map[string]int `json:"domains,omitempty"`
	// Notes explain what is missing, e.g. that no labels were found (and
	// how to give them): metrics are then absent.
	Notes []string `json:"notes,omitempty"`
	// Warnings say why the scores may not mean much: inputs unlike the
	// training images, or most images flagged.
	Warnings []string `json:"warnings,omitempty"`
}

// NoLabelsNote is summary.json's note for a run without labels.
const NoLabelsNote = "no labels found, so there are no accuracy metrics: give labels with an MVTec layout " +
	"(test/good/ for normal images, test/<defect>/ for anomalous ones, ground_truth/<defect>/<name>_mask.png for masks) " +
	"or a manifest CSV with a label column (0 normal, 1 anomalous; see docs/outputs.md)"

// FlaggedWarnShare is the share of flagged images above which a run warns
// that the inputs may not be what the model was trained on.
const FlaggedWarnShare = 0.5

// DomainWarnings compares the scored images' domains with the training
// images' (bundle.Data.Domains; nil for bundles that do not record them)
// and the share of flagged images with FlaggedWarnShare, and says what
// looks out of domain. With labels (labelled not nil: the run's metrics),
// the share is of the labelled normal images that must be flagged
// whatever the rest are: flagged − positives − unlabelled images, so that
// a test set that is mostly defects does not warn.
func DomainWarnings(training, scored map[string]int, flagged, total int, labelled *Metrics) []string {
	var w []string
	if len(training) > 0 {
		var odd []string
		n := 0
		for d, c := range scored {
			if training[d] == 0 {
				odd = append(odd, fmt.Sprintf("%s (%d)", d, c))
				n += c
			}
		}
		if len(odd) > 0 {
			sort.Strings(odd)
			var trained []string
			for d := range training {
				trained = append(trained, d)
			}
			sort.Strings(trained)
			w = append(w, fmt.Sprintf("out of domain: %d of %d images are unlike the training images (%s), by modality, channels or bit depth: %s; their scores may mean nothing",
				n, total, strings.Join(trained, ", "), strings.Join(odd, ", ")))
		}
	}
	switch {
	case labelled != nil && labelled.Count > 0:
		normals := labelled.Count - labelled.Positives
		fp := flagged - labelled.Positives - (total - labelled.Count) // flagged normals, at least
		if normals > 0 && float64(fp) > FlaggedWarnShare*float64(normals) {
			w = append(w, fmt.Sprintf("at least %d of the %d images labelled normal (%.0f%%) are flagged: more than half, which suggests inputs unlike the training images or a threshold that does not fit them",
				fp, normals, 100*float64(fp)/float64(normals)))
		}
	case total > 0 && float64(flagged) > FlaggedWarnShare*float64(total):
		w = append(w, fmt.Sprintf("%d of %d images (%.0f%%) are flagged: more than half, which suggests inputs unlike the training images rather than that many defects",
			flagged, total, 100*float64(flagged)/float64(total)))
	}
	return w
}

// StudySummary is summary.json's "studies": counts, and the study- and
// series-level metrics where study labels exist (a study_label column, or
// derived: a study is abnormal when any of its slices is).
type StudySummary struct {
	// Score is how a group's score comes from its slices: max or topk:K.
	Score         string   `json:"score"`
	Studies       int      `json:"studies"`
	Series        int      `json:"series"`
	Flagged       int      `json:"flagged_studies"`
	FlaggedSeries int      `json:"flagged_series"`
	Metrics       *Metrics `json:"metrics,omitempty"`
	SeriesMetrics *Metrics `json:"series_metrics,omitempty"`
	// Notes say why a metric is missing (e.g. every study is abnormal).
	Notes []string `json:"notes,omitempty"`
}

// StudySlice is one of a study's top slices in the report.
type StudySlice struct {
	URI     string  `json:"uri"`
	Slice   *int    `json:"slice,omitempty"`
	Frame   *int    `json:"frame,omitempty"`
	Score   float64 `json:"score"`
	Heatmap string  `json:"heatmap,omitempty"`
}

// StudyRow is one study or series of the report's study table.
type StudyRow struct {
	Level     string       `json:"level"`
	Study     string       `json:"study"`
	Series    string       `json:"series,omitempty"`
	Score     float64      `json:"score"`
	Anomalous bool         `json:"anomalous"`
	Label     *int         `json:"label,omitempty"`
	Slices    int          `json:"slices"`
	Top       []StudySlice `json:"top,omitempty"`
}

// StudyDigest is what the study step hands to Finish in StudyDigestFile:
// the summary and the table's rows, highest score first.
type StudyDigest struct {
	Summary StudySummary `json:"summary"`
	// Rows holds the first MaxStudyRows rows (the table's); Total counts
	// every row, and MultiSlice is set when any row covers more than one
	// image (the table is shown only then).
	Rows       []StudyRow `json:"rows"`
	Total      int        `json:"total"`
	MultiSlice bool       `json:"multi_slice"`
}

// StudyDigestFile is the study step's sidecar in the staging folder.
const StudyDigestFile = "_studies.json"

// MaxStudyRows bounds the study table of report.html.
const MaxStudyRows = 500

// Incremental is summary.json's "incremental" for a run with --state.
type Incremental struct {
	// State is the ledger URI; Run the run's folder name under runs/.
	State string `json:"state"`
	Run   string `json:"run"`
	// Listed inputs, of which New, Changed and ModelChanged were scored and
	// Unchanged skipped.
	Listed       int `json:"listed"`
	New          int `json:"new"`
	Changed      int `json:"changed"`
	ModelChanged int `json:"model_changed"`
	Unchanged    int `json:"unchanged"`
}

// RunInfo is what the driver knows about a run.
type RunInfo struct {
	Input, Output string
	Threshold     float64
	Model         map[string]any
	Heatmaps      string
	GroupBy       string
	Started       time.Time
	Elapsed       time.Duration
	// Incremental, when set, goes into summary.json as is.
	Incremental *Incremental
	// TrainingDomains are the bundle's bundle.Data.Domains.
	TrainingDomains map[string]int
}

// Finish reads the digest that Write left in dir and writes summary.json
// and report.html next to it.
func Finish(ctx context.Context, dir string, info RunInfo) (*Summary, error) {
	b, err := storage.ReadFile(ctx, storage.Join(dir, digestFile), 4<<30)
	if err != nil {
		return nil, fmt.Errorf("report: the pipeline left no digest: %w", err)
	}
	var d Digest
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("report: digest: %w", err)
	}
	sum := &Summary{Input: info.Input, Output: info.Output, Inputs: d.Inputs, Scored: d.Scored, Failed: d.Failed, Flagged: d.Flagged, Domains: d.Domains,
		Threshold: info.Threshold, Model: info.Model, Heatmaps: info.Heatmaps, GroupBy: info.GroupBy,
		Started: info.Started.UTC(), Incremental: info.Incremental}
	sum.Throughput.Seconds = info.Elapsed.Seconds()
	if s := info.Elapsed.Seconds(); s > 0 {
		sum.Throughput.ImagesPerSecond = float64(d.Scored) / s
	}
	if d.Report != nil {
		m := metricsOf(d.Report.Overall)
		sum.Metrics = &m
		for g, gm := range d.Report.ByGroup {
			if sum.ByGroup == nil {
				sum.ByGroup = map[string]Metrics{}
			}
			sum.ByGroup[g] = metricsOf(gm)
		}
	}
	if sum.Metrics != nil && sum.Metrics.Count == 0 {
		sum.Metrics, sum.ByGroup = nil, nil
	}
	if sum.Metrics == nil {
		sum.Notes = append(sum.Notes, NoLabelsNote)
	}
	sum.Warnings = DomainWarnings(info.TrainingDomains, d.Domains, d.Flagged, d.Scored, sum.Metrics)
	var studies *StudyDigest
	if b, err := storage.ReadFile(ctx, storage.Join(dir, StudyDigestFile), 4<<30); err == nil {
		studies = new(StudyDigest)
		if err := json.Unmarshal(b, studies); err != nil {
			return nil, fmt.Errorf("report: %s: %w", StudyDigestFile, err)
		}
		sum.Studies = &studies.Summary
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("report: %w", err)
	}
	d.Studies = studies
	sj, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, err
	}
	html, err := HTML(sum, &d)
	if err != nil {
		return nil, err
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(dir, ReportFile), html); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(dir, SummaryFile), append(sj, '\n')); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return sum, nil
}
