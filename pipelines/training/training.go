// Package training turns a folder or manifest of normal images into a model
// bundle: it decodes and preprocesses the images exactly as scoring does,
// computes the frozen teacher's features once in ONNX Runtime, trains the
// Multi-AD student and discriminator in GoMLX, exports the single ONNX
// scoring graph, and calibrates thresholds on held-out normals by running
// that exported graph, so the bundle's thresholds are the deployed model's.
//
// It is the driver behind `multiad train`, a sequence of plain Go steps
// (Run lists them), not a Beam pipeline.
package training

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/version"
	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/export"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/model/train"
	"github.com/multiad/multiad/transforms/read"
)

// Options configure a training run.
type Options struct {
	// Data is a folder of normal images, an MVTec layout root (its
	// train/good is used), or a manifest CSV (uri[,slice]).
	Data string
	// Out is the bundle to write (directory or .tar, local or gs://).
	Out string
	// Teacher is a built-in teacher's name (teacher.BuiltinNames), "auto"
	// (AutoTeacher by modality), a .tflite file (imported) or an .onnx
	// backbone with TeacherFeatures naming its stride-4/8/16 outputs. ""
	// uses the MobileNetV2 in the shared folder.
	Teacher         string
	TeacherFeatures []string
	// Train is the training configuration (size, epochs, student, ...).
	Train train.Config
	// Preprocess is the intensity normalisation (its Size is set from Train.Size).
	Preprocess preprocess.Config
	// Augment is "on" (random flips) or "off" (the default, also "" and
	// "auto"). Off measured better on magnetic tiles even with exact
	// teacher features for the flipped images (128 px, 10 epochs: image /
	// pixel AUROC 0.873 / 0.760 off, 0.862 / 0.752 on; bench/ACCURACY.md),
	// and flips would hide orientation in medical images.
	Augment string
	// Shift is the largest random shift, in pixels, of the training images
	// (0: none); like flips, shifted images get their own teacher features.
	Shift int
	// Fusion is "auto" (product fusion for medical images, where it
	// measured better on lgg_flair, sum for industrial ones, where sum did
	// on the tiles: bench/ACCURACY.md), "sum" or "product", which override
	// Train.Map.Fuse, or "" to keep it.
	Fusion string
	// FeaturePool is "auto" (DefaultFeaturePool for industrial images, where
	// it measured better on the tiles, none for medical ones, where it
	// measured worse on lgg_flair: bench/ACCURACY.md), three window widths
	// ("1,5,1"), which override Train.Map.Pool, or "" to keep it.
	FeaturePool string
	// Sigma, when positive, overrides Train.Map.Sigma. Otherwise SigmaAuto
	// picks it by modality (MedicalSigma for medical images,
	// student.DefaultSigma otherwise), and without SigmaAuto Train.Map.Sigma
	// is kept.
	Sigma     float64
	SigmaAuto bool
	// HardMining is "auto" (train.DefaultHardMining for industrial images,
	// 0 for medical ones, where it measured worse: see bench/ACCURACY.md) or
	// a number, which override Train.HardMining, or "" to keep it.
	HardMining string
	// ValFraction of the normals is held out for calibration.
	ValFraction float64
	// MaxImages caps the number of training images (0: all), taken
	// deterministically after shuffling with the seed.
	MaxImages int
	// Threads is ONNX Runtime's intra-op thread count for teacher features
	// and calibration (0: default).
	Threads int
	// Log receives progress lines (nil: stderr).
	Log io.Writer
	// Head is the map's head: "student" (also ""), "bank" (the teacher's
	// features against a memory bank of training patches; no student is
	// trained), "fused" (both, each standardised by its held-out normals'
	// pixel mean and standard deviation, summed) or "auto" (AutoHead).
	Head string
	// BankSize is the number of memory-bank vectors (0: BankSize's default
	// for the head: DefaultBankSize, DefaultFusedBankSize for fused);
	// CoresetProj the dimension of the coreset selection's random
	// projection (0: DefaultCoresetProj; negative or ≥ the features' channels: none).
	BankSize, CoresetProj int
	// VerifyExport runs the exported scoring graph in ONNX Runtime on the
	// held-out images and records the largest difference from GoMLX's
	// scores in the bundle (Result.ParityMax).
	VerifyExport bool
}

// Result summarises a training run.
type Result struct {
	Bundle    *bundle.Bundle
	Train     *train.Result
	Images    int      // images used (train + validation)
	Failed    []string // inputs that could not be used, with reasons
	ParityMax float64  // max |score(ONNX) − score(GoMLX)| on the validation images (NaN unless VerifyExport)
	Elapsed   time.Duration
}

// sample is one preprocessed training image.
type sample struct {
	key    string
	tensor []float32
	format string
	domain string
}

// fewNormals is the number of held-out normals below which a calibrated
// threshold earns a warning (the log and model.json's scores.warning).
const fewNormals = 20

// Run trains a model and writes its bundle. It is the training driver (not
// a Beam pipeline), and reads as its steps.
func Run(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	logw := opt.Log
	if logw == nil {
		logw = os.Stderr
	}
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "train: "+format+"\n", args...) }
	cfg, pcfg, err := checkOptions(opt)
	if err != nil {
		return nil, err
	}
	set, err := loadSamples(ctx, opt, pcfg, cfg.Seed, logf)
	if err != nil {
		return nil, err
	}
	head, tname, err := resolveAuto(opt, &cfg, set.medical, logf)
	if err != nil {
		return nil, err
	}
	tch, err := LoadTeacher(tname, opt.TeacherFeatures)
	if err != nil {
		return nil, err
	}
	logf("teacher %s (%s), features %v, channels %v", tch.Name, tch.Path, tch.Features, tch.FeatureChannels())
	ft, err := teacherFeatures(tch, set, cfg.Size, opt.Threads, logf)
	if err != nil {
		return nil, err
	}
	defer ft.sess.Close()
	cfg.Student.Channels = tch.FeatureChannels()
	h, err := trainHead(cfg, head, ft, opt, train.Printer(logw, 10*time.Second), logf)
	if err != nil {
		return nil, err
	}
	b, err := writeBundle(ctx, opt, pcfg, tch, ft.tonnx, set, h, logf, start)
	if err != nil {
		return nil, err
	}
	parity, check, err := verifyExport(ctx, opt, b, h)
	if err != nil {
		return nil, err
	}
	cal := h.res.Calibration
	logf("wrote %s: threshold %.5f (q%.2f of %d %s), %s, %.0fs",
		opt.Out, cal.ImageThreshold, cal.Quantile, len(h.calib), h.calibWhat, check, b.Manifest.TrainSecs)
	return &Result{Bundle: b, Train: h.res, Images: len(set.all), Failed: set.failed, ParityMax: parity, Elapsed: time.Since(start)}, nil
}

// checkOptions checks opt and returns the training configuration and the
// preprocessing (opt.Preprocess, or the default, at the model size).
func checkOptions(opt Options) (train.Config, preprocess.Config, error) {
	cfg := opt.Train
	if cfg.Size == 0 {
		return cfg, preprocess.Config{}, errors.New("training: no image size")
	}
	pcfg := opt.Preprocess
	if pcfg.Mode == "" {
		pcfg = preprocess.Default(cfg.Size)
	}
	pcfg.Size = cfg.Size
	if err := pcfg.Validate(); err != nil {
		return cfg, pcfg, err
	}
	if opt.ValFraction < 0 || opt.ValFraction >= 1 {
		return cfg, pcfg, fmt.Errorf("training: validation fraction %g out of range [0, 1)", opt.ValFraction)
	}
	return cfg, pcfg, nil
}

// sampleSet is the decoded normals, split into training and held-out
// images.
type sampleSet struct {
	// all is every image used, shuffled; val and trn split it.
	all, val, trn []sample
	// failed are the inputs that could not be used, with reasons.
	failed []string
	// medical is set when an image is DICOM or NIfTI: the auto choices
	// depend on it.
	medical bool
}

// loadSamples lists and decodes the normal images of opt.Data (its
// train/good for an MVTec root) as the scoring pipeline does, preprocesses
// them with pcfg, shuffles them with seed, keeps opt.MaxImages and holds
// out opt.ValFraction.
func loadSamples(ctx context.Context, opt Options, pcfg preprocess.Config, seed uint64, logf func(string, ...any)) (*sampleSet, error) {
	data := opt.Data
	good := storage.Join(data, "train", "good")
	if ok, _ := storage.IsDir(ctx, good); ok { // no train/good: not an MVTec layout
		data = good
	}
	files, err := read.List(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	var samples []sample
	var failed []string
	x := read.NewExpander(read.Options{})
	for _, f := range files {
		x.Expand(ctx, f, func(d read.Decoded) {
			t, err := preprocess.Tensor(d.Image, pcfg)
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s[%d]: %v", d.Item.URI, d.Item.Index, err))
				return
			}
			samples = append(samples, sample{key: fmt.Sprintf("%s#%d", d.Item.URI, d.Item.Index), tensor: t, format: d.Image.Meta.Format,
				domain: bundle.DomainOf(d.Image).String()})
		}, func(fl read.Failure) {
			failed = append(failed, fmt.Sprintf("%s[%d]: %s", fl.URI, fl.Index, fl.Error))
		})
	}
	for i, f := range failed {
		if i == 5 {
			logf("... and %d more unreadable inputs", len(failed)-5)
			break
		}
		logf("skipping unreadable input %s", f)
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("training: no usable images in %s (%d failed)", opt.Data, len(failed))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i].key < samples[j].key })
	rng := rand.New(rand.NewPCG(seed, 0x6d756c7469616421))
	rng.Shuffle(len(samples), func(i, j int) { samples[i], samples[j] = samples[j], samples[i] })
	if opt.MaxImages > 0 && len(samples) > opt.MaxImages {
		samples = samples[:opt.MaxImages]
	}
	nVal := int(math.Round(opt.ValFraction * float64(len(samples))))
	if opt.ValFraction > 0 && nVal == 0 && len(samples) > 1 {
		nVal = 1
	}
	if len(samples)-nVal < 1 {
		return nil, fmt.Errorf("training: %d images leave none for training after holding out %d", len(samples), nVal)
	}
	set := &sampleSet{all: samples, val: samples[:nVal], trn: samples[nVal:], failed: failed}
	logf("%d images (%d train, %d validation) from %s; %d unreadable", len(samples), len(set.trn), len(set.val), data, len(failed))
	for _, s := range samples {
		if s.format == "dicom" || s.format == "nifti" {
			set.medical = true
			break
		}
	}
	return set, nil
}

// resolveAuto applies the options that override cfg (augmentation, hard
// mining, blur, fusion, feature pooling), resolving their auto choices for
// a training set that is medical or not, logs the result, and resolves the
// head and the teacher's name.
func resolveAuto(opt Options, cfg *train.Config, medical bool, logf func(string, ...any)) (export.Head, string, error) {
	var err error
	switch opt.Augment {
	case "on":
		cfg.Augment = train.Augment{HFlip: true, VFlip: true}
	case "", "auto", "off":
		cfg.Augment = train.Augment{}
	default:
		return "", "", fmt.Errorf("training: augment %q: want on or off", opt.Augment)
	}
	cfg.Augment.Shift = opt.Shift
	if opt.HardMining != "" {
		if cfg.HardMining, err = hardMining(opt.HardMining, medical); err != nil {
			return "", "", err
		}
	}
	switch {
	case opt.Sigma > 0:
		cfg.Map.Sigma = opt.Sigma
	case opt.SigmaAuto:
		cfg.Map.Sigma = student.DefaultSigma(cfg.Size)
		if medical {
			cfg.Map.Sigma = MedicalSigma(cfg.Size)
		}
	}
	if opt.Fusion != "" {
		if cfg.Map.Fuse, err = fusion(opt.Fusion, medical); err != nil {
			return "", "", err
		}
	}
	if opt.FeaturePool != "" {
		if cfg.Map.Pool, err = featurePool(opt.FeaturePool, medical, cfg.Size); err != nil {
			return "", "", err
		}
	}
	pooling := ""
	if cfg.Map.PoolRadius(0)+cfg.Map.PoolRadius(1)+cfg.Map.PoolRadius(2) > 0 {
		pooling = fmt.Sprintf(", features averaged over %d/%d/%d-wide windows", cfg.Map.Pool[0], cfg.Map.Pool[1], cfg.Map.Pool[2])
	}
	logf("flips %v, shifts ≤ %d px, synthetic defects in %g of the images, hard-feature mining %g, %s fusion, blur σ %g px%s", cfg.Augment.HFlip, cfg.Augment.Shift, cfg.Denoise, cfg.HardMining, cfg.Map.Fuse, cfg.Map.Sigma, pooling)

	head, err := resolveHead(opt.Head, medical)
	if err != nil {
		return "", "", err
	}
	tname := opt.Teacher
	if tname == TeacherAuto {
		tname = AutoTeacher(medical)
	}
	return head, tname, nil
}

// teacherBatch is the number of images per teacher call.
const teacherBatch = 8

// features are the teacher's features of a sample set, with the open
// teacher session that computed them (training computes those of
// augmented images with it).
type features struct {
	tonnx    []byte // the teacher's feature graph
	sess     *ort.Session
	trn, val []train.Sample
}

// teacherFeatures computes the teacher's features of every sample once, in
// ONNX Runtime. The caller closes the returned session.
func teacherFeatures(tch *LoadedTeacher, set *sampleSet, S, threads int, logf func(string, ...any)) (*features, error) {
	tonnx, err := tch.FeaturesONNX()
	if err != nil {
		return nil, fmt.Errorf("training: teacher: %w", err)
	}
	sess, err := ort.NewSession(tonnx, []string{teacher.InputImage}, teacher.FeatureOutputs[:], ort.Options{IntraOpThreads: threads, Device: ort.DeviceCPU})
	if err != nil {
		return nil, fmt.Errorf("training: teacher: %w", err)
	}
	feats := func(ss []sample) ([]train.Sample, error) {
		imgs := make([][]float32, len(ss))
		for i, s := range ss {
			imgs[i] = s.tensor
		}
		return train.TeacherFeatures(sess, imgs, S, teacherBatch)
	}
	t0 := time.Now()
	ft := &features{tonnx: tonnx, sess: sess}
	if ft.trn, err = feats(set.trn); err != nil {
		sess.Close()
		return nil, fmt.Errorf("training: teacher features: %w", err)
	}
	if ft.val, err = feats(set.val); err != nil {
		sess.Close()
		return nil, fmt.Errorf("training: teacher features: %w", err)
	}
	logf("teacher features for %d images in %.1fs", len(set.all), time.Since(t0).Seconds())
	return ft, nil
}

// trained is what trainHead made: the run's configuration (what the bundle
// records; the student's channels are the teacher's), the training result
// (calibrated), the export options of the scoring graph, and the images it
// was calibrated on.
type trained struct {
	cfg       train.Config
	res       *train.Result
	eopt      export.Options
	calib     []train.Sample
	calibWhat string
}

// trainHead trains the student, selects the memory bank, or both, as head
// asks, and calibrates the head's scores on the held-out normals (on the
// training images when none are held out).
func trainHead(cfg train.Config, head export.Head, ft *features, opt Options, progress func(train.Progress), logf func(string, ...any)) (*trained, error) {
	res := &train.Result{Config: cfg}
	var err error
	if head != export.HeadBank {
		res, err = train.Train(cfg, train.Dataset{Train: ft.trn, Val: ft.val, Teacher: train.SessionTeacher(ft.sess, cfg.Size, teacherBatch)}, progress)
		if err != nil {
			return nil, err
		}
	}
	h := &trained{cfg: cfg, res: res, calib: ft.val, calibWhat: "held-out normals"}
	if len(h.calib) == 0 {
		h.calib, h.calibWhat = ft.trn, "training images: nothing held out"
	}
	h.eopt = export.Options{Size: res.Config.Size, Student: res.Config.Student, Map: res.Config.Map, Weights: res.Student}
	h.eopt.Head = head
	if head != export.HeadStudent {
		if h.eopt.Bank, err = buildBank(ft.trn, cfg.Size, BankSize(opt.BankSize, head), opt, logf); err != nil {
			return nil, err
		}
		maps, scores, norms, err := headMaps(head, h.eopt.Bank, res, h.calib, opt.Threads)
		if err != nil {
			return nil, err
		}
		res.Calibration = train.Calibrate(maps, scores, cfg.Quantile)
		h.eopt.Norms = norms
	}
	return h, nil
}

// trainingSection is the bundle's record of the run: its configuration,
// the head and its memory bank.
func trainingSection(h *trained, valFraction float64) (*bundle.Training, error) {
	cfg := h.cfg
	tr := &bundle.Training{
		Size: cfg.Size, Epochs: cfg.Epochs, Batch: cfg.BatchSize, LR: cfg.LR, Seed: cfg.Seed,
		AdvWeight: cfg.AdvWeight, HardMining: cfg.HardMining, Denoise: cfg.Denoise,
		Steps: h.res.Steps, EpochKDLoss: h.res.EpochKDLoss, ValFraction: valFraction, Head: string(h.eopt.Head),
	}
	var err error
	if tr.Student, err = json.Marshal(cfg.Student); err != nil {
		return nil, fmt.Errorf("training: student configuration: %w", err)
	}
	if tr.Map, err = json.Marshal(cfg.Map); err != nil {
		return nil, fmt.Errorf("training: map configuration: %w", err)
	}
	if tr.Augment, err = json.Marshal(cfg.Augment); err != nil {
		return nil, fmt.Errorf("training: augmentation: %w", err)
	}
	if bk := h.eopt.Bank; h.eopt.Head != export.HeadStudent {
		radius := bk.Radius
		tr.BankSize, tr.BankPatches, tr.CoresetRadius = bk.M(), bk.Patches, &radius
		tr.BankChannels = []int{bk.C8, bk.C16}
		if h.eopt.Head == export.HeadFused {
			tr.FuseNorms = &bundle.FuseNorms{Student: bundle.Norm(h.eopt.Norms[0]), Bank: bundle.Norm(h.eopt.Norms[1])}
		}
	}
	return tr, nil
}

// writeBundle exports the scoring graph (the teacher's feature graph tonnx
// and the head) and writes the bundle, with the calibration of GoMLX's (or
// the bank's Go) validation pass. The bundle is written before the export
// is verified, so that nothing after it can cost the training.
func writeBundle(ctx context.Context, opt Options, pcfg preprocess.Config, tch *LoadedTeacher, tonnx []byte, set *sampleSet, h *trained,
	logf func(string, ...any), start time.Time) (*bundle.Bundle, error) {
	model, err := export.Build(tonnx, h.eopt)
	if err != nil {
		return nil, err
	}
	tr, err := trainingSection(h, opt.ValFraction)
	if err != nil {
		return nil, err
	}
	man := bundle.Manifest{
		Version:    version.Version,
		Channels:   3,
		Preprocess: pcfg,
		Teacher:    bundle.Teacher{Name: tch.Name, Source: tch.Path, SHA256: tch.SHA256, Features: tch.Features[:]},
		Input:      export.InputName,
		Outputs:    []string{export.MapName, export.ScoreName},
		Data:       bundle.Data{Count: len(set.all), URIHash: hashKeys(set.all), Source: opt.Data, Domains: domains(set.all)},
		Training:   tr,
		Trained:    time.Now().UTC(),
	}
	b := &bundle.Bundle{Model: model, Manifest: man}
	b.Manifest.ModelSHA256 = bundle.SHA256(model)
	b.Manifest.Format = bundle.FormatVersion
	cal := h.res.Calibration
	b.Manifest.Scores = bundle.Scores{
		Threshold: cal.ImageThreshold, Quantile: cal.Quantile, PixelThreshold: cal.PixelThreshold,
		Min: cal.ScoreMin, Max: cal.ScoreMax, PixelMin: cal.MapMin, PixelMax: cal.MapMax, Validation: len(h.calib),
	}
	if len(set.val) < fewNormals {
		b.Manifest.Scores.Warning = fmt.Sprintf("the threshold comes from %d held-out normal images (fewer than %d): "+
			"it may flag too many or too few; train on more normal images or raise --val-fraction", len(set.val), fewNormals)
		logf("warning: %s", b.Manifest.Scores.Warning)
	}
	b.Manifest.TrainSecs = time.Since(start).Seconds()
	if err := bundle.Save(ctx, opt.Out, b); err != nil {
		return nil, err
	}
	return b, nil
}

// verifyExport runs the written bundle's graph in ONNX Runtime on the
// calibration images when opt.VerifyExport, records the largest score
// difference from training's own pass in the bundle (rewriting it), and
// fails when it exceeds ParityTolerance. It returns the difference (NaN
// when not checked) and a phrase for the log.
func verifyExport(ctx context.Context, opt Options, b *bundle.Bundle, h *trained) (float64, string, error) {
	if !opt.VerifyExport {
		return math.NaN(), "export parity not checked", nil
	}
	cal := h.res.Calibration
	scores, err := scoreONNX(b, opt, h.calib)
	if err != nil {
		return 0, "", fmt.Errorf("training: %s is written, but verifying it failed: %w", opt.Out, err)
	}
	if len(scores) != len(cal.Scores) {
		return 0, "", fmt.Errorf("training: %s is written, but ONNX scored %d validation images, GoMLX %d", opt.Out, len(scores), len(cal.Scores))
	}
	parity := 0.0
	for i := range scores {
		parity = math.Max(parity, math.Abs(scores[i]-cal.Scores[i]))
	}
	recorded := parity
	b.Manifest.Training.ParityMaxAbsScoreDiff = &recorded
	if err := bundle.Save(ctx, opt.Out, b); err != nil {
		return 0, "", err
	}
	if tol := ParityTolerance(b.Manifest.Scores); !(parity <= tol) {
		return 0, "", fmt.Errorf("training: %s is written, but its ONNX Runtime scores differ from training's by up to %.3g on the %s (tolerance %.3g): do not use it", opt.Out, parity, h.calibWhat, tol)
	}
	if h.eopt.Head == export.HeadBank {
		return parity, fmt.Sprintf("ONNX vs Go max score diff %.2e", parity), nil
	}
	return parity, fmt.Sprintf("ONNX vs GoMLX max score diff %.2e", parity), nil
}

// hashKeys is the sha256 of the sorted image keys (uri#index).
func hashKeys(ss []sample) string {
	keys := make([]string, len(ss))
	for i, s := range ss {
		keys[i] = s.key
	}
	sort.Strings(keys)
	h := sha256.Sum256([]byte(strings.Join(keys, "\n")))
	return hex.EncodeToString(h[:])
}

// MedicalSigma is the blur σ for medical images at size S: three times
// student.DefaultSigma. On lgg_flair (128 px, product fusion, 10 epochs)
// σ = 2, 3, 4, 6, 8 px gave image AUROC 0.809, 0.812, 0.817, 0.831, 0.841
// and pixel AUROC 0.956, 0.958, 0.959, 0.960, 0.959 (bench/ACCURACY.md):
// tumours are large, smooth regions.
func MedicalSigma(S int) float64 { return 3 * student.DefaultSigma(S) }

// hardMining resolves Options.HardMining for a training set that is
// medical or not.
func hardMining(opt string, medical bool) (float64, error) {
	switch opt {
	case "auto":
		if medical {
			return 0, nil
		}
		return train.DefaultHardMining, nil
	}
	k, err := strconv.ParseFloat(opt, 64)
	if err != nil || !(k >= 0) || math.IsInf(k, 0) {
		return 0, fmt.Errorf("training: hard mining %q: want auto or a number ≥ 0", opt)
	}
	return k, nil
}

// fusion resolves Options.Fusion for a training set that is medical or
// not.
func fusion(opt string, medical bool) (student.Fusion, error) {
	switch opt {
	case "auto":
		if medical {
			return student.FuseProduct, nil
		}
		return student.FuseSum, nil
	case string(student.FuseSum), string(student.FuseProduct):
		return student.Fusion(opt), nil
	}
	return "", fmt.Errorf("training: fusion %q: want auto, sum or product", opt)
}

// DefaultFeaturePool is the feature pooling of industrial images at size S:
// none at strides 4 and 16, and at stride 8 a window of 5 at 256 px (40
// pixels), scaled to S and rounded to an odd width. On the tiles (three
// seeds, 256 px) it added 0.018–0.026 image and 0.022–0.024 pixel AUROC and
// cost 0.010 AU-PRO.
func DefaultFeaturePool(S int) [3]int {
	return [3]int{1, 2*int(math.Round(2*float64(S)/256)) + 1, 1}
}

// featurePool resolves Options.FeaturePool.
func featurePool(opt string, medical bool, S int) ([3]int, error) {
	if opt == "auto" {
		if medical {
			return [3]int{1, 1, 1}, nil
		}
		return DefaultFeaturePool(S), nil
	}
	var p [3]int
	if !ParseScales(opt, &p) {
		return p, fmt.Errorf("training: feature pooling %q: want auto or three odd window widths such as 1,5,1", opt)
	}
	return p, nil
}

// TeacherAuto is the Teacher option that picks the teacher by modality
// (AutoTeacher).
const TeacherAuto = "auto"

// AutoTeacher is the built-in teacher "auto" resolves to, per modality
// (medical: DICOM/NIfTI; otherwise industrial pictures). On the magnetic
// tiles MobileNet EdgeTPU's bank head scores image AUROC 0.963 against
// MobileNetV2's 0.948 (bench/ACCURACY.md, "Teacher, resize and heads");
// medical images keep MobileNetV2, whose student every lgg_flair figure
// used.
func AutoTeacher(medical bool) string {
	if medical {
		return teacher.MobileNetV2
	}
	return teacher.MobileNetEdgeTPU
}

// LoadedTeacher is a teacher LoadTeacher imported.
type LoadedTeacher struct {
	*teacher.Teacher
	// Name is the built-in teacher's name, or the file's base name.
	Name string
	// Path is the resolved file and SHA256 its hex sha256.
	Path, SHA256 string
}

// LoadTeacher imports a teacher: a built-in name (teacher.BuiltinNames),
// a .tflite file or an .onnx backbone (features then name its three
// outputs); "" is the default, MobileNetV2 from the shared folder. "auto"
// must be resolved with AutoTeacher first. features, when given, name the
// stride-4, -8 and -16 tensors in place of the built-in ones.
func LoadTeacher(name string, features []string) (*LoadedTeacher, error) {
	if name == "" {
		name = teacher.MobileNetV2
	}
	if name == TeacherAuto {
		return nil, fmt.Errorf("training: teacher %q is resolved per modality (AutoTeacher) before loading", name)
	}
	path, label := name, filepath.Base(name)
	b, builtin := teacher.LookupBuiltin(name)
	if builtin {
		p, err := shared.Path(b.Path)
		if err != nil {
			return nil, fmt.Errorf("training: teacher %s: %w (or pass --teacher PATH)", name, err)
		}
		path, label = p, b.Name
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		if !builtin && !strings.ContainsAny(name, "./\\") {
			return nil, fmt.Errorf("training: teacher %q is neither a file nor a built-in teacher (%s)", name, teacher.BuiltinNames(", "))
		}
		return nil, fmt.Errorf("training: teacher: %w", err)
	}
	sum := sha256.Sum256(raw)
	var t *teacher.Teacher
	switch {
	case builtin:
		t, err = teacher.ImportBuiltin(b, path, features)
	case strings.HasSuffix(strings.ToLower(path), ".onnx"):
		if len(features) != 3 {
			return nil, fmt.Errorf("training: an ONNX teacher needs --teacher-features with three output names (strides 4, 8, 16)")
		}
		t, err = teacher.ImportONNX(path, features)
	default:
		t, err = teacher.Import(path, teacher.ImportOptions{Features: features})
	}
	if err != nil {
		return nil, err
	}
	return &LoadedTeacher{Teacher: t, Name: label, Path: path, SHA256: hex.EncodeToString(sum[:])}, nil
}

// LoadTeacherDir returns the folder of the default teacher (it also holds labels.txt).
func LoadTeacherDir() (string, error) {
	b, _ := teacher.LookupBuiltin(teacher.MobileNetV2)
	p, err := shared.Path(b.Path)
	if err != nil {
		return "", err
	}
	return filepath.Dir(p), nil
}

// ParityTolerance is the largest score difference allowed between the
// exported graph in ONNX Runtime and training's GoMLX validation pass:
// 1e-4 of the validation scores' range or of their largest value, whichever
// is larger (ranges under 1e-3 count as 1e-3).
func ParityTolerance(s bundle.Scores) float64 {
	return 1e-4 * math.Max(math.Max(s.Max-s.Min, 1e-3), s.Max)
}

// scoreONNX scores samples with the bundle's exported graph in ONNX Runtime.
func scoreONNX(b *bundle.Bundle, opt Options, ss []train.Sample) ([]float64, error) {
	rt, err := inference.New(b, opt.Out, ort.Options{IntraOpThreads: opt.Threads, Device: ort.DeviceCPU})
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	var scores []float64
	for i := 0; i < len(ss); i += 8 {
		j := min(i+8, len(ss))
		batch := make([][]float32, 0, j-i)
		for _, s := range ss[i:j] {
			batch = append(batch, s.Image)
		}
		_, sc, err := rt.Score(batch)
		if err != nil {
			return nil, err
		}
		for _, v := range sc {
			scores = append(scores, float64(v))
		}
	}
	return scores, nil
}

// ParseScales reads three comma-separated numbers, one per scale (strides
// 4, 8, 16), into v; with T int each must be a whole number.
func ParseScales[T int | float64](s string, v *[3]T) bool {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return false
	}
	var out [3]T
	for i, x := range f {
		n, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if out[i] = T(n); err != nil || float64(out[i]) != n {
			return false
		}
	}
	*v = out
	return true
}

// domains counts samples by bundle.DomainOf.
func domains(samples []sample) map[string]int {
	m := map[string]int{}
	for _, s := range samples {
		m[s.domain]++
	}
	return m
}
