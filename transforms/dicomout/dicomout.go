// Package dicomout files multiad's heatmap overlays back into the hospital
// archive: for every flagged series (a series with at least one anomalous
// slice) it writes each scored slice's overlay (transforms/report.Overlay:
// the model input in gray with the anomaly map in the jet colormap, RGB, at
// the model size) as a DICOM Secondary Capture instance, and sends it with
// STOW-RS to a DICOMweb server or writes it to a folder.
//
// Each capture goes into the source's study: its StudyInstanceUID and the
// Patient and General Study modules (patient name, ID, birth date, sex;
// study date, time, ID, accession number, referring physician) are copied
// from the source instance's header, read again for that purpose. The
// captures therefore identify the patient, as any image filed in a PACS
// must; treat a --dicom-out folder as PHI. Each flagged series gets one new
// series (SeriesDescription "multiad heatmap <version>", SeriesNumber 9000 +
// the source's, Modality OT), one instance per slice with the source's
// InstanceNumber (frame or slice number + 1 for multi-frame files and
// volumes), referencing its source image in Source Image Sequence.
//
// UIDs are 2.25.<UUID> (see io/dicomwrite), derived by name from the
// source's Series or SOP Instance UID (and slice index) and Options.ModelID:
// re-running the same model on the same series replaces its captures
// instead of adding copies; another model makes another series.
//
// Results need the source's DICOM identity: score with
// score.Options.KeepIdentity (which --include-phi does not have to be on
// for: reports still leave identity out). A result scored without it is a
// Failure; a result whose identity is empty (not DICOM) is skipped.
package dicomout

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/filter"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/dicomweb"
	"github.com/multiad/multiad/io/dicomwrite"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

// Options configure Write.
type Options struct {
	// Target is a DICOMweb service (dicomweb://, dicomweb+http://,
	// dicomweb+https:// base URI, see io/dicomweb), which receives the
	// captures with STOW-RS, or a folder (local, file:// or gs://), which
	// receives STUDY/SERIES/SOP.dcm files.
	Target string
	// MapLo and MapHi are the overlay's anomaly-map range (the bundle's
	// validation pixel range, as for report heatmaps).
	MapLo, MapHi float64
	// ModelVersion names the model in SeriesDescription (e.g. the multiad
	// version); ModelID (e.g. the model's sha256) goes into the new UIDs.
	ModelVersion, ModelID string
	// All writes every DICOM series scored, not only flagged ones.
	All bool
}

// Validate checks the options.
func (o Options) Validate() error {
	if o.Target == "" {
		return fmt.Errorf("dicomout: no target")
	}
	if IsDICOMweb(o.Target) {
		if _, err := dicomweb.Parse(o.Target); err != nil {
			return fmt.Errorf("dicomout: target: %w", err)
		}
	}
	return nil
}

// IsDICOMweb reports whether target names a DICOMweb service.
func IsDICOMweb(target string) bool {
	scheme, _, ok := strings.Cut(target, "://")
	if !ok {
		return false
	}
	for _, s := range dicomweb.Schemes {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// Written describes one stored capture.
type Written struct {
	// Source and Index are the scored item's URI and slice (-1: single).
	Source string
	Index  int
	// Study, Series and SOP are the capture's UIDs; URI is where it went
	// (the DICOMweb instance URI or the file).
	Study, Series, SOP string
	URI                string
}

func init() {
	beam.RegisterType(reflect.TypeOf((*Written)(nil)).Elem())
	register.DoFn2x0[score.Result, func(string)](&flaggedFn{})
	register.DoFn5x1[context.Context, score.Result, func(*string) bool, func(Written), func(read.Failure), error](&writeFn{})
	register.Emitter1[Written]()
	register.Emitter1[string]()
	register.Emitter1[read.Failure]()
	register.Iter1[string]()
}

// Write writes the overlays of results (PCollection<score.Result>, scored
// with KeepMaps and KeepIdentity) as Secondary Captures. It returns
// PCollection<Written> and PCollection<read.Failure>.
// A series is flagged when one of its results is Anomalous (every DICOM
// series with opt.All).
func Write(s beam.Scope, results beam.PCollection, opt Options) (written, failures beam.PCollection) {
	s = s.Scope("DICOMOut")
	flagged := filter.Distinct(s, beam.ParDo(s, &flaggedFn{All: opt.All}, results))
	return beam.ParDo2(s, &writeFn{Opt: opt}, results, beam.SideInput{Input: flagged})
}

// WriteSeries is Write with the flagged series chosen by the caller:
// series is a PCollection<string> of source SeriesInstanceUIDs (real
// UIDs, not hashed ones), e.g. the series a study-level score flags.
func WriteSeries(s beam.Scope, results, series beam.PCollection, opt Options) (written, failures beam.PCollection) {
	s = s.Scope("DICOMOut")
	return beam.ParDo2(s, &writeFn{Opt: opt}, results, beam.SideInput{Input: filter.Distinct(s, series)})
}

// flaggedFn emits the SeriesInstanceUID of each anomalous DICOM result
// (of every DICOM result with All).
type flaggedFn struct{ All bool }

func (f *flaggedFn) ProcessElement(r score.Result, emit func(string)) {
	if r.Identity != nil && r.Identity.SeriesInstanceUID != "" && (r.Anomalous || f.All) {
		emit(r.Identity.SeriesInstanceUID)
	}
}

// writeFn writes the captures of the flagged series' results.
type writeFn struct {
	Opt Options

	// flagged caches the side input (one global window: the same set
	// for every bundle).
	flagged map[string]bool
}

func (f *writeFn) ProcessElement(ctx context.Context, r score.Result, flagged func(*string) bool, emit func(Written), fail func(read.Failure)) error {
	if r.Identity == nil {
		fail(read.Failure{URI: r.Item.URI, Index: r.Item.Index,
			Error: "dicomout: result has no DICOM identity (score with KeepIdentity to write DICOM output)"})
		return nil
	}
	if r.Identity.SeriesInstanceUID == "" {
		return nil // not DICOM
	}
	if f.flagged == nil {
		f.flagged = map[string]bool{}
		var s string
		for flagged(&s) {
			f.flagged[s] = true
		}
	}
	if !f.flagged[r.Identity.SeriesInstanceUID] {
		return nil
	}
	w, err := WriteOne(ctx, r, f.Opt)
	if err != nil {
		fail(read.Failure{URI: r.Item.URI, Index: r.Item.Index, Error: err.Error()})
		return nil
	}
	emit(w)
	return nil
}

// Capture builds the Secondary Capture of one result, reading the source
// instance's header from r.Item.URI.
func Capture(ctx context.Context, r score.Result, opt Options) (dicomwrite.Capture, error) {
	img, err := report.Overlay(r, opt.MapLo, opt.MapHi)
	if err != nil {
		return dicomwrite.Capture{}, fmt.Errorf("dicomout: %w", err)
	}
	data, err := storage.ReadFile(ctx, r.Item.URI, decode.MaxBytes(pixels.DefaultLimits))
	if err != nil {
		return dicomwrite.Capture{}, fmt.Errorf("dicomout: source %s: %w", r.Item.URI, err)
	}
	src, err := dicomwrite.ReadSource(data)
	if err != nil {
		return dicomwrite.Capture{}, fmt.Errorf("dicomout: source %s: %w", r.Item.URI, err)
	}
	if r.Identity != nil && r.Identity.SOPInstanceUID != "" && src.SOPInstanceUID != r.Identity.SOPInstanceUID {
		return dicomwrite.Capture{}, fmt.Errorf("dicomout: source %s now holds SOP instance %s, scored %s", r.Item.URI, src.SOPInstanceUID, r.Identity.SOPInstanceUID)
	}
	inst := 1
	if r.Item.Index >= 0 {
		inst = r.Item.Index + 1
	} else if n, err := strconv.Atoi(strings.TrimSpace(src.InstanceNumber)); err == nil {
		inst = n
	}
	seriesNo := 9000
	if n, err := strconv.Atoi(strings.TrimSpace(src.SeriesNumber)); err == nil && n >= 0 && n < 1e9 {
		seriesNo += n
	}
	state := "normal"
	if r.Anomalous {
		state = "anomalous"
	}
	desc := "multiad heatmap"
	if opt.ModelVersion != "" {
		desc += " " + opt.ModelVersion
	}
	return dicomwrite.Capture{
		Source:            src,
		Image:             img,
		SeriesInstanceUID: dicomwrite.NameUID("multiad-sc-series", src.SeriesInstanceUID, opt.ModelID),
		SOPInstanceUID:    dicomwrite.NameUID("multiad-sc", src.SOPInstanceUID, strconv.Itoa(r.Item.Index), opt.ModelID),
		SeriesNumber:      seriesNo,
		InstanceNumber:    inst,
		SeriesDescription: desc,
		DerivationDescription: fmt.Sprintf("multiad anomaly map over the model input (%dx%d, jet colormap); score %.6g (%s); model %s %s",
			r.Size, r.Size, r.Score, state, opt.ModelVersion, opt.ModelID),
		Software: strings.TrimSpace("multiad " + opt.ModelVersion),
	}, nil
}

// WriteOne builds the capture of one result and stores it at opt.Target.
func WriteOne(ctx context.Context, r score.Result, opt Options) (Written, error) {
	c, err := Capture(ctx, r, opt)
	if err != nil {
		return Written{}, err
	}
	b, err := dicomwrite.SecondaryCapture(c)
	if err != nil {
		return Written{}, fmt.Errorf("dicomout: %s: %w", r.Item.URI, err)
	}
	w := Written{Source: r.Item.URI, Index: r.Item.Index, Study: c.Source.StudyInstanceUID, Series: c.SeriesInstanceUID, SOP: c.SOPInstanceUID}
	if IsDICOMweb(opt.Target) {
		l, err := dicomweb.Parse(opt.Target)
		if err != nil {
			return Written{}, fmt.Errorf("dicomout: target: %w", err)
		}
		if err := dicomweb.Default().Store(ctx, dicomweb.Location{Base: l.Base}, b); err != nil {
			return Written{}, fmt.Errorf("dicomout: %s: %w", r.Item.URI, err)
		}
		w.URI = l.InstanceURI(w.Study, w.Series, w.SOP)
		return w, nil
	}
	w.URI = storage.Join(opt.Target, w.Study, w.Series, w.SOP+".dcm")
	if err := storage.WriteFileAtomic(ctx, w.URI, b); err != nil {
		return Written{}, fmt.Errorf("dicomout: %w", err)
	}
	return w, nil
}
