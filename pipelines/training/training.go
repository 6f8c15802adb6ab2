// Package training turns a folder or manifest of normal images into a model
// bundle: it decodes and preprocesses the images exactly as scoring does,
// computes the frozen teacher's features once in ONNX Runtime, trains the
// Multi-AD student and discriminator in GoMLX, exports the single ONNX
// scoring graph, and calibrates thresholds on held-out normals by running
// that exported graph, so the bundle's thresholds are the deployed model's.
package training

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	// Sigma, when positive, overrides Train.Map.Sigma; SigmaAuto picks it by
	// modality (MedicalSigma for medical images, student.DefaultSigma
	// otherwise); 0 keeps it.
	Sigma float64
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

// Run trains a model and writes its bundle.
func Run(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	logw := opt.Log
	if logw == nil {
		logw = os.Stderr
	}
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "train: "+format+"\n", args...) }
	cfg := opt.Train
	if cfg.Size == 0 {
		return nil, errors.New("training: no image size")
	}
	pcfg := opt.Preprocess
	if pcfg.Mode == "" {
		pcfg = preprocess.Default(cfg.Size)
	}
	pcfg.Size = cfg.Size
	if err := pcfg.Validate(); err != nil {
		return nil, err
	}
	if opt.ValFraction < 0 || opt.ValFraction >= 1 {
		return nil, fmt.Errorf("training: validation fraction %g out of range [0, 1)", opt.ValFraction)
	}

	// 1. List and decode the normal images, as the scoring pipeline does.
	data := opt.Data
	if good := storage.Join(data, "train", "good"); isDir(good) {
		data = good
	} else if storage.IsRemote(good) {
		if l, err := storage.List(ctx, good); err == nil && len(l) > 0 {
			data = good
		}
	}
	files, err := read.List(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("training: %w", err)
	}
	var samples []sample
	var failed []string
	for _, f := range files {
		read.ExpandFile(ctx, f, read.Options{}, func(d read.Decoded) {
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
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d756c7469616421))
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
	val, trn := samples[:nVal], samples[nVal:]
	logf("%d images (%d train, %d validation) from %s; %d unreadable", len(samples), len(trn), len(val), data, len(failed))

	medical := false
	for _, s := range samples {
		if s.format == "dicom" || s.format == "nifti" {
			medical = true
			break
		}
	}
	switch opt.Augment {
	case "on":
		cfg.Augment = train.Augment{HFlip: true, VFlip: true}
	case "", "auto", "off":
		cfg.Augment = train.Augment{}
	default:
		return nil, fmt.Errorf("training: augment %q: want on or off", opt.Augment)
	}
	cfg.Augment.Shift = opt.Shift
	if opt.HardMining != "" {
		if cfg.HardMining, err = hardMining(opt.HardMining, medical); err != nil {
			return nil, err
		}
	}
	switch {
	case opt.Sigma > 0:
		cfg.Map.Sigma = opt.Sigma
	case opt.Sigma == SigmaAuto:
		cfg.Map.Sigma = student.DefaultSigma(cfg.Size)
		if medical {
			cfg.Map.Sigma = MedicalSigma(cfg.Size)
		}
	}
	if opt.Fusion != "" {
		if cfg.Map.Fuse, err = fusion(opt.Fusion, medical); err != nil {
			return nil, err
		}
	}
	if opt.FeaturePool != "" {
		if cfg.Map.Pool, err = featurePool(opt.FeaturePool, medical, cfg.Size); err != nil {
			return nil, err
		}
	}
	pooling := ""
	if cfg.Map.PoolRadius(0)+cfg.Map.PoolRadius(1)+cfg.Map.PoolRadius(2) > 0 {
		pooling = fmt.Sprintf(", features averaged over %d/%d/%d-wide windows", cfg.Map.Pool[0], cfg.Map.Pool[1], cfg.Map.Pool[2])
	}
	logf("flips %v, shifts ≤ %d px, synthetic defects in %g of the images, hard-feature mining %g, %s fusion, blur σ %g px%s", cfg.Augment.HFlip, cfg.Augment.Shift, cfg.Denoise, cfg.HardMining, cfg.Map.Fuse, cfg.Map.Sigma, pooling)

	head, err := resolveHead(opt.Head, medical)
	if err != nil {
		return nil, err
	}

	// 2. Teacher features, computed once in ONNX Runtime.
	tname := opt.Teacher
	if tname == TeacherAuto {
		tname = AutoTeacher(medical)
	}
	tch, err := LoadTeacher(tname, opt.TeacherFeatures)
	if err != nil {
		return nil, err
	}
	logf("teacher %s (%s), features %v, channels %v", tch.Name, tch.Path, tch.Features, tch.FeatureChannels())
	tonnx, err := tch.FeaturesONNX()
	if err != nil {
		return nil, fmt.Errorf("training: teacher: %w", err)
	}
	sess, err := ort.NewSession(tonnx, []string{teacher.InputImage}, teacher.FeatureOutputs[:], ort.Options{IntraOpThreads: opt.Threads, Device: ort.DeviceCPU})
	if err != nil {
		return nil, fmt.Errorf("training: teacher: %w", err)
	}
	defer sess.Close()
	const teacherBatch = 8
	feats := func(ss []sample) ([]train.Sample, error) {
		imgs := make([][]float32, len(ss))
		for i, s := range ss {
			imgs[i] = s.tensor
		}
		return train.TeacherFeatures(sess, imgs, cfg.Size, teacherBatch)
	}
	t0 := time.Now()
	trainSet, err := feats(trn)
	if err != nil {
		return nil, fmt.Errorf("training: teacher features: %w", err)
	}
	valSet, err := feats(val)
	if err != nil {
		return nil, fmt.Errorf("training: teacher features: %w", err)
	}
	logf("teacher features for %d images in %.1fs", len(samples), time.Since(t0).Seconds())

	// 3. Train the student, select the memory bank, or both.
	cfg.Student.Channels = tch.FeatureChannels()
	res := &train.Result{Config: cfg}
	if head != export.HeadBank {
		res, err = train.Train(cfg, train.Dataset{Train: trainSet, Val: valSet, Teacher: train.SessionTeacher(sess, cfg.Size, teacherBatch)}, ProgressPrinter(logw))
		if err != nil {
			return nil, err
		}
	}
	calibSet, calibWhat := valSet, "held-out normals"
	if len(calibSet) == 0 {
		calibSet, calibWhat = trainSet, "training images: nothing held out"
	}
	eopt := export.FromResult(res)
	eopt.Head = head
	headInfo := map[string]any{"head": head}
	if head != export.HeadStudent {
		if eopt.Bank, err = buildBank(trainSet, cfg.Size, BankSize(opt.BankSize, head), opt, logf); err != nil {
			return nil, err
		}
		maps, scores, norms, err := headMaps(head, eopt.Bank, res, calibSet, opt.Threads)
		if err != nil {
			return nil, err
		}
		res.Calibration = train.Calibrate(maps, scores, cfg.Quantile)
		eopt.Norms = norms
		headInfo["bank_size"], headInfo["bank_patches"], headInfo["coreset_radius"] = eopt.Bank.M(), eopt.Bank.Patches, eopt.Bank.Radius
		headInfo["bank_channels"] = []int{eopt.Bank.C8, eopt.Bank.C16}
		if head == export.HeadFused {
			headInfo["fuse_norms"] = map[string]export.Norm{"student": norms[0], "bank": norms[1]}
		}
	}

	// 4. Export the scoring graph and calibrate it on the held-out normals.
	model, err := export.Build(tonnx, eopt)
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
		Data:       bundle.Data{Count: len(samples), URIHash: hashKeys(samples), Source: opt.Data, Domains: domains(samples)},
		Training: map[string]any{
			"size": cfg.Size, "epochs": cfg.Epochs, "batch": cfg.BatchSize, "lr": cfg.LR, "seed": cfg.Seed,
			"adv_weight": cfg.AdvWeight, "hard_mining": cfg.HardMining, "student": cfg.Student, "map": cfg.Map, "augment": cfg.Augment,
			"denoise": cfg.Denoise, "steps": res.Steps, "epoch_kd_loss": res.EpochKDLoss, "val_fraction": opt.ValFraction,
		},
		Trained: time.Now().UTC(),
	}
	for k, v := range headInfo {
		man.Training[k] = v
	}
	b := &bundle.Bundle{Model: model, Manifest: man}
	b.Manifest.ModelSHA256 = bundle.SHA256(model)
	b.Manifest.Format = bundle.FormatVersion
	// Calibration comes from GoMLX's validation pass. The bundle is written
	// first, so that nothing after it (the optional check below) can cost
	// the training.
	cal := res.Calibration
	b.Manifest.Scores = bundle.Scores{
		Threshold: cal.ImageThreshold, Quantile: cal.Quantile, PixelThreshold: cal.PixelThreshold,
		Min: cal.ScoreMin, Max: cal.ScoreMax, PixelMin: cal.MapMin, PixelMax: cal.MapMax, Validation: len(calibSet),
	}
	if len(valSet) < fewNormals {
		b.Manifest.Scores.Warning = fmt.Sprintf("the threshold comes from %d held-out normal images (fewer than %d): "+
			"it may flag too many or too few; train on more normal images or raise --val-fraction", len(valSet), fewNormals)
		logf("warning: %s", b.Manifest.Scores.Warning)
	}
	b.Manifest.TrainSecs = time.Since(start).Seconds()
	if err := bundle.Save(ctx, opt.Out, b); err != nil {
		return nil, err
	}
	// With VerifyExport the exported graph is also run in ONNX Runtime on
	// the validation images, and the largest score difference is recorded
	// in the bundle (and must stay tiny).
	parity := math.NaN()
	check := "export parity not checked"
	if opt.VerifyExport {
		scores, err := scoreONNX(b, opt, calibSet)
		if err != nil {
			return nil, fmt.Errorf("training: %s is written, but verifying it failed: %w", opt.Out, err)
		}
		if len(scores) != len(cal.Scores) {
			return nil, fmt.Errorf("training: %s is written, but ONNX scored %d validation images, GoMLX %d", opt.Out, len(scores), len(cal.Scores))
		}
		parity = 0
		for i := range scores {
			parity = math.Max(parity, math.Abs(scores[i]-cal.Scores[i]))
		}
		b.Manifest.Training["parity_max_abs_score_diff"] = parity
		if err := bundle.Save(ctx, opt.Out, b); err != nil {
			return nil, err
		}
		if tol := ParityTolerance(b.Manifest.Scores); !(parity <= tol) {
			return nil, fmt.Errorf("training: %s is written, but its ONNX Runtime scores differ from training's by up to %.3g on the %s (tolerance %.3g): do not use it", opt.Out, parity, calibWhat, tol)
		}
		check = fmt.Sprintf("ONNX vs GoMLX max score diff %.2e", parity)
		if head == export.HeadBank {
			check = fmt.Sprintf("ONNX vs Go max score diff %.2e", parity)
		}
	}
	logf("wrote %s: threshold %.5f (q%.2f of %d %s), %s, %.0fs",
		opt.Out, cal.ImageThreshold, cal.Quantile, len(calibSet), calibWhat, check, b.Manifest.TrainSecs)
	return &Result{Bundle: b, Train: res, Images: len(samples), Failed: failed, ParityMax: parity, Elapsed: time.Since(start)}, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
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

// SigmaAuto is the Options.Sigma that picks the blur by modality.
const SigmaAuto float64 = -1

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

// ProgressPrinter returns a train progress callback that draws a one-line
// bar on a terminal and prints periodic lines otherwise.
func ProgressPrinter(w io.Writer) func(train.Progress) {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	last := time.Time{}
	return func(p train.Progress) {
		if p.Phase == "validate" {
			return
		}
		done := p.Step >= p.Steps
		if !tty && !done && time.Since(last) < 10*time.Second {
			return
		}
		last = time.Now()
		frac := float64(p.Step) / float64(max(p.Steps, 1))
		const width = 24
		n := int(frac * width)
		bar := strings.Repeat("=", n) + strings.Repeat(" ", width-n)
		line := fmt.Sprintf("[%s] %3.0f%% epoch %d/%d step %d/%d kd %.4f adv %.3f disc %.3f %.1f img/s ETA %s",
			bar, 100*frac, p.Epoch, p.Epochs, p.Step, p.Steps, p.KDLoss, p.AdvLoss, p.DiscLoss, p.ImagesPerSec, p.ETA.Round(time.Second))
		if tty {
			fmt.Fprintf(w, "\r%s", line)
			if done {
				fmt.Fprintln(w)
			}
		} else {
			fmt.Fprintln(w, "train: "+line)
		}
	}
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
