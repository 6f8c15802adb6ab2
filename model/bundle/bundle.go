// Package bundle reads and writes multiad model bundles: a directory (or a
// .tar of one) holding model.onnx, the single scoring graph, and model.json,
// its manifest. Loading checks the format version and the graph's sha256.
package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"
	"time"

	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/preprocess"
)

// FormatVersion is the bundle format this build reads and writes.
const FormatVersion = 1

// File names inside a bundle.
const (
	ModelFile    = "model.onnx"
	ManifestFile = "model.json"
)

// maxModelBytes bounds the size of a model graph read from a bundle.
const maxModelBytes = 2 << 30

// Teacher identifies the frozen teacher network.
type Teacher struct {
	Name     string   `json:"name"`
	Source   string   `json:"source,omitempty"`
	SHA256   string   `json:"sha256"`
	Features []string `json:"features"`
}

// Scores holds calibration results from held-out normal images.
type Scores struct {
	// Threshold is the image-score threshold (the Quantile of validation scores).
	Threshold float64 `json:"threshold"`
	Quantile  float64 `json:"quantile"`
	// PixelThreshold is the same quantile over validation map pixels.
	PixelThreshold float64 `json:"pixel_threshold"`
	// Min and Max of validation image scores, and of map pixels, for normalised scores in [0, 1].
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	PixelMin float64 `json:"pixel_min"`
	PixelMax float64 `json:"pixel_max"`
	// Validation is the number of held-out images.
	Validation int `json:"validation"`
	// Warning says why the calibration deserves little trust (e.g. a
	// threshold from very few held-out normals); empty when it does not.
	Warning string `json:"warning,omitempty"`
}

// Normalize maps an image score to [0, 1] with the threshold at 0.5:
// ((s − Threshold) / (Max − Min)) + 0.5, clipped (anomalib's min-max
// normalisation, with the validation scores' range). A score above the
// threshold, and only such a score, normalises above 0.5.
func (s Scores) Normalize(v float64) float64 { return normalize(v, s.Threshold, s.Min, s.Max) }

// NormalizePixel maps an anomaly-map value to [0, 1] with the pixel
// threshold at 0.5, as Normalize does with the map pixels' range.
func (s Scores) NormalizePixel(v float64) float64 {
	return normalize(v, s.PixelThreshold, s.PixelMin, s.PixelMax)
}

func normalize(v, thr, lo, hi float64) float64 {
	span := hi - lo
	if !(span > 0) || math.IsInf(span, 0) {
		// No usable range: only the side of the threshold is known.
		span = math.SmallestNonzeroFloat64
	}
	n := (v-thr)/span + 0.5
	switch {
	case math.IsNaN(n):
		return 0.5
	case n < 0:
		return 0
	case n > 1:
		return 1
	}
	return n
}

// Data summarises the training data.
type Data struct {
	Count   int    `json:"count"`
	URIHash string `json:"uri_sha256"`
	Source  string `json:"source,omitempty"`
	// Domains counts the training images by domain (see DomainOf):
	// what scoring compares its inputs with. Absent in older bundles.
	Domains map[string]int `json:"domains,omitempty"`
}

// Domain is what an image must share with the training images for the
// model's scores to mean anything: its kind (the DICOM modality, "NIfTI",
// or "picture" for PNG/JPEG/TIFF/BMP), channels and bit depth.
type Domain struct {
	Kind     string
	Channels int
	Bits     string
}

// String is the domain's key in Data.Domains, e.g. "MR 1ch 16-bit".
func (d Domain) String() string { return fmt.Sprintf("%s %dch %s", d.Kind, d.Channels, d.Bits) }

// DomainOf returns an image's domain.
func DomainOf(img *pixels.Image) Domain {
	d := Domain{Kind: "picture", Channels: img.Channels}
	switch img.Meta.Format {
	case "dicom":
		d.Kind = img.Meta.Modality
		if d.Kind == "" {
			d.Kind = "DICOM"
		}
	case "nifti":
		d.Kind = "NIfTI"
	}
	switch img.DType {
	case pixels.Uint8:
		d.Bits = "8-bit"
	case pixels.Uint16, pixels.Int16:
		d.Bits = "16-bit"
	default:
		d.Bits = fmt.Sprint(img.DType)
	}
	return d
}

// Manifest is model.json.
type Manifest struct {
	Format      int               `json:"format_version"`
	Version     string            `json:"multiad_version"`
	Channels    int               `json:"channels"`
	Preprocess  preprocess.Config `json:"preprocess"`
	Teacher     Teacher           `json:"teacher"`
	ModelSHA256 string            `json:"model_sha256"`
	Input       string            `json:"input"`
	Outputs     []string          `json:"outputs"`
	Scores      Scores            `json:"scores"`
	Data        Data              `json:"training_data"`
	Training    *Training         `json:"training,omitempty"`
	Trained     time.Time         `json:"trained_at"`
	TrainSecs   float64           `json:"training_seconds"`
}

// Training is model.json's "training" section: how the model was trained.
// Its fields are in the order of their JSON keys, the order encoding/json
// wrote them when the section was a map, so that a bundle's bytes are what
// they were. Fields a head does not use are left out of the JSON; keys of
// older bundles that no field names are dropped when such a bundle is
// loaded and saved again.
type Training struct {
	AdvWeight float64 `json:"adv_weight"`
	// Augment, Map and Student are the run's train.Augment,
	// student.MapConfig and student.Config as JSON: a bundle is read where
	// the training packages (and GoMLX) are not linked.
	Augment json.RawMessage `json:"augment,omitempty"`
	// BankChannels, BankPatches, BankSize and CoresetRadius describe the
	// memory bank of the bank and fused heads (absent for the student
	// head): the teacher's stride-8 and stride-16 channels, the training
	// patches the coreset was selected from, the vectors kept and the
	// coreset's covering radius.
	BankChannels  []int    `json:"bank_channels,omitempty"`
	BankPatches   int      `json:"bank_patches,omitempty"`
	BankSize      int      `json:"bank_size,omitempty"`
	Batch         int      `json:"batch"`
	CoresetRadius *float64 `json:"coreset_radius,omitempty"`
	Denoise       float64  `json:"denoise"`
	// EpochKDLoss is the mean KD loss of each epoch (null when no student
	// was trained).
	EpochKDLoss []float64 `json:"epoch_kd_loss"`
	Epochs      int       `json:"epochs"`
	// FuseNorms are the fused head's per-map standardisations.
	FuseNorms  *FuseNorms `json:"fuse_norms,omitempty"`
	HardMining float64    `json:"hard_mining"`
	// Head is the map's head: student, bank or fused.
	Head string          `json:"head,omitempty"`
	LR   float64         `json:"lr"`
	Map  json.RawMessage `json:"map,omitempty"`
	// ParityMaxAbsScoreDiff is the largest score difference between the
	// exported graph in ONNX Runtime and training's own pass on the
	// held-out images; nil when it was not checked.
	ParityMaxAbsScoreDiff *float64        `json:"parity_max_abs_score_diff,omitempty"`
	Seed                  uint64          `json:"seed"`
	Size                  int             `json:"size"`
	Steps                 int             `json:"steps"`
	Student               json.RawMessage `json:"student,omitempty"`
	ValFraction           float64         `json:"val_fraction"`
}

// FuseNorms are the means and standard deviations of the student's and
// the bank's map pixels over the held-out normals, which the fused head
// standardises each map by.
type FuseNorms struct {
	Bank    Norm `json:"bank"`
	Student Norm `json:"student"`
}

// Norm is a mean and standard deviation.
type Norm struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// Bundle is a loaded model bundle.
type Bundle struct {
	Manifest Manifest
	Model    []byte
}

// Validate checks the manifest's invariants.
func (m *Manifest) Validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("bundle: format version %d, this multiad reads %d", m.Format, FormatVersion)
	}
	if err := m.Preprocess.Validate(); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	if m.Channels != 3 {
		return fmt.Errorf("bundle: %d input channels, want 3", m.Channels)
	}
	if m.Input == "" || len(m.Outputs) != 2 {
		return fmt.Errorf("bundle: manifest must name one input and two outputs (anomaly_map, score)")
	}
	return nil
}

// SHA256 returns the hex sha256 of b.
func SHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Load reads a bundle from a directory or a .tar file, local or gs://.
func Load(ctx context.Context, uri string) (*Bundle, error) {
	var files map[string][]byte
	if strings.HasSuffix(uri, ".tar") {
		data, err := storage.ReadFile(ctx, uri, maxModelBytes)
		if err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		if files, err = untar(data); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", uri, err)
		}
	} else {
		files = map[string][]byte{}
		for _, name := range []string{ManifestFile, ModelFile} {
			b, err := storage.ReadFile(ctx, storage.Join(uri, name), maxModelBytes)
			if err != nil {
				return nil, fmt.Errorf("bundle %s: missing %s: %w", uri, name, err)
			}
			files[name] = b
		}
	}
	return parse(uri, files)
}

func parse(uri string, files map[string][]byte) (*Bundle, error) {
	mj, ok := files[ManifestFile]
	if !ok {
		return nil, fmt.Errorf("bundle %s: no %s", uri, ManifestFile)
	}
	model, ok := files[ModelFile]
	if !ok {
		return nil, fmt.Errorf("bundle %s: no %s", uri, ModelFile)
	}
	var m Manifest
	if err := json.Unmarshal(mj, &m); err != nil {
		return nil, fmt.Errorf("bundle %s: %s: %w", uri, ManifestFile, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, uri)
	}
	if got := SHA256(model); got != m.ModelSHA256 {
		return nil, fmt.Errorf("bundle %s: %s sha256 %s does not match the manifest's %s", uri, ModelFile, got, m.ModelSHA256)
	}
	return &Bundle{Manifest: m, Model: model}, nil
}

func untar(data []byte) (map[string][]byte, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading tar: %w", err)
		}
		name := path.Base(h.Name)
		if name != ModelFile && name != ManifestFile {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxModelBytes))
		if err != nil {
			return nil, fmt.Errorf("reading %s from tar: %w", h.Name, err)
		}
		files[name] = b
	}
	return files, nil
}

// Save writes the bundle to uri: a directory, or a .tar file when uri ends
// in ".tar". It fills in ModelSHA256 and the format version.
func Save(ctx context.Context, uri string, b *Bundle) error {
	b.Manifest.Format = FormatVersion
	b.Manifest.ModelSHA256 = SHA256(b.Model)
	if err := b.Manifest.Validate(); err != nil {
		return err
	}
	mj, err := json.MarshalIndent(b.Manifest, "", "  ")
	if err != nil {
		return err
	}
	if strings.HasSuffix(uri, ".tar") {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, f := range []struct {
			name string
			data []byte
		}{{ManifestFile, mj}, {ModelFile, b.Model}} {
			if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: b.Manifest.Trained}); err != nil {
				return err
			}
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return storage.WriteFileAtomic(ctx, uri, buf.Bytes())
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(uri, ModelFile), b.Model); err != nil {
		return err
	}
	return storage.WriteFileAtomic(ctx, storage.Join(uri, ManifestFile), mj)
}
