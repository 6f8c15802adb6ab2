package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/multiad/multiad/internal/tailload"
	"github.com/multiad/multiad/model/export"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/model/train"
	"github.com/multiad/multiad/pipelines/training"
)

func init() {
	register("train", "train a model bundle on normal images", runTrain)
}

func runTrain(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	def := train.DefaultConfig(train.DefaultSize)
	data := fs.String("data", "", "normal images: a folder, an MVTec root (uses train/good), or a manifest CSV (uri[,slice])")
	out := fs.String("out", "", "bundle to write: a directory or a .tar, local or gs://")
	size := fs.Int("size", def.Size, "model input size (multiple of 32)")
	epochs := fs.Int("epochs", def.Epochs, "training epochs")
	maxSteps := fs.Int("max-steps", 0, "stop after this many steps (0: no limit)")
	batch := fs.Int("batch", def.BatchSize, "images per step")
	lr := fs.Float64("lr", def.LR, "student learning rate (Adam, peak)")
	discLR := fs.Float64("disc-lr", def.DiscLR, "discriminator learning rate")
	schedule := fs.String("schedule", def.Schedule, "learning-rate schedule: cosine, step or constant")
	seed := fs.Uint64("seed", def.Seed, "random seed (initialisation, split, shuffling, augmentation)")
	valFrac := fs.Float64("val-fraction", 0.1, "fraction of normals held out to calibrate the threshold")
	quantile := fs.Float64("quantile", def.Quantile, "threshold = this quantile of held-out normal scores")
	width := fs.Int("width", def.Student.Width, "student width (channels at stride 4)")
	depth := fs.Int("depth", def.Student.Depth, "student residual blocks per stage")
	seRed := fs.Int("se-reduction", def.Student.SEReduction, "squeeze-and-excitation reduction ratio (0 leaves SE out, for ablations)")
	adv := fs.Float64("adv-weight", def.AdvWeight, "weight of the adversarial term (0 disables the discriminator)")
	hard := fs.String("hard-mining", "auto", "train on the pixels whose teacher distance is at least mean + this many std of the batch: a number (0: every pixel) or auto (2.5, 0 for DICOM/NIfTI)")
	fusion := fs.String("fusion", "auto", "per-scale map fusion: sum, product or auto (product for DICOM/NIfTI, sum otherwise)")
	sigma := fs.Float64("sigma", 0, "Gaussian blur sigma in pixels (0: auto, 4 px at 256 scaled to the size, 3× that for DICOM/NIfTI)")
	weights := fs.String("scale-weights", "", "per-scale map weights for strides 4,8,16 (e.g. 0,0,1; default 0.25,0.5,1)")
	pool := fs.String("feature-pool", "auto", "per-scale odd window widths over which student and teacher features are averaged before the cosine distance, strides 4,8,16 (e.g. 1,5,1; 1,1,1: none), or auto (1,5,1 at 256 px scaled to the size, none for DICOM/NIfTI)")
	denoise := fs.Float64("denoise", def.Denoise, "probability that a training image is replaced by a copy with a synthetic defect (brightness, contrast, blur, pasted texture or noise in a random region) while the target stays the clean image's teacher features (0: off; measured worse on magnetic tiles)")
	shift := fs.Int("shift", 0, "random shifts of the training images by up to this many pixels (0: none)")
	augment := fs.String("augment", "off", "random flip augmentation, with teacher features of the flipped images: on or off (measured worse on magnetic tiles)")
	mode := fs.String("norm", preprocess.ModeAuto, "intensity normalisation: auto, range, percentile, window")
	window := fs.String("window", "", "CT window center,width in HU (e.g. 40,400)")
	resize := fs.String("resize", preprocess.ResizeAntialias, "resize to the model size: antialias (when shrinking, a triangle filter scaled to the reduction, as PIL's bilinear) or bilinear (plain half-pixel bilinear, as bundles before this flag); recorded in the bundle, which scoring follows")
	teacherPath := fs.String("teacher", training.TeacherAuto, "teacher: a built-in one ("+teacher.BuiltinNames(", ")+"), auto (by modality: "+training.AutoTeacher(false)+" for industrial, "+training.AutoTeacher(true)+" for DICOM/NIfTI images), or a .tflite (imported) or .onnx backbone file")
	teacherFeats := fs.String("teacher-features", "", "the teacher's stride-4,8,16 feature tensors/outputs: three comma-separated names or, for a built-in teacher, a layer set: "+teacher.LayersStageEnds+" (default: each stage's last residual add) or "+teacher.LayersExpanded+" (the wider activations before the last projection at strides 8 and 16)")
	maxImages := fs.Int("max-images", 0, "use at most this many images (0: all)")
	ckpt := fs.String("checkpoint", "", "checkpoint file: saved every epoch, resumed from if it exists (a finished run's checkpoint re-exports its weights with other --fusion, --sigma, --scale-weights, --feature-pool or --quantile, without training)")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (0: default)")
	head := fs.String("head", "auto", "anomaly-map head: student (teacher–student), bank (nearest-neighbour distance of the teacher's stride-8+16 patch features to a coreset memory bank of training patches; trains no student), fused (both maps, each standardised by the mean and std of its held-out normal pixels, summed) or auto (by modality: "+string(training.AutoHead(false))+" for industrial, "+string(training.AutoHead(true))+" for DICOM/NIfTI images)")
	bankSize := fs.Int("bank-size", 0, fmt.Sprintf("memory-bank vectors kept by greedy coreset selection (0: %d for the bank head, %d for fused, which also runs the student)", training.DefaultBankSize, training.DefaultFusedBankSize))
	coresetProj := fs.Int("coreset-proj", training.DefaultCoresetProj, "dimension of the random projection coreset selection measures distances in (-1 or ≥ the feature channels: none, the full space)")
	verify := fs.Bool("verify-export", true, "run the exported graph in ONNX Runtime on the held-out images, record its largest score difference from training in the bundle, and fail if it exceeds 1e-4 of the scores' range or largest value (the bundle is written first)")
	h := &help{name: "train", synopsis: "multiad train --data D --out BUNDLE [flags]",
		about: "Trains a student network on normal images and writes a model bundle (model.onnx + model.json)\n" +
			"with a threshold calibrated on held-out normals. Settings marked auto are picked by modality.",
		groups: []flagGroup{
			{"data and bundle", []string{"data", "out", "max-images", "val-fraction", "quantile"}},
			{"training", []string{"size", "epochs", "max-steps", "batch", "lr", "disc-lr", "schedule", "seed", "checkpoint", "threads", "verify-export"}},
			{"anomaly map", []string{"hard-mining", "fusion", "sigma", "scale-weights", "feature-pool"}},
			{"student and teacher", []string{"width", "depth", "se-reduction", "adv-weight", "teacher", "teacher-features"}},
			{"preprocessing and augmentation", []string{"norm", "window", "augment", "shift", "denoise"}},
		},
		examples: []string{
			"multiad train --data ../shared/data/industrial/magnetic_tile --out tiles.bundle",
			"multiad train --data normals.csv --out gs://bucket/models/mri.tar --size 128 --epochs 20",
			"multiad train --data tiles/train/good --out quick.bundle --size 64 --epochs 1 --max-images 32",
		}}
	if code, ok := parseArgs(fs, h, args); !ok {
		return code
	}
	if msg := missingFlags(fs, "data", "out"); msg != "" {
		return usageError("train", msg)
	}
	if fs.NArg() > 0 {
		return usageError("train", fmt.Sprintf("unexpected arguments %q (the images are given with --data)", fs.Args()))
	}
	if *head != "auto" {
		if _, err := export.ParseHead(*head); err != nil {
			fmt.Fprintf(os.Stderr, "multiad train: --head %q: want student, bank, fused or auto\n", *head)
			return 2
		}
	}
	if err := tailload.Check(); err != nil {
		fmt.Fprintf(os.Stderr, "multiad train: warning: %v. Training can die with \"unexpected fault address\" (README: Toolchain)\n", err)
	}
	cfg := train.DefaultConfig(*size)
	cfg.Epochs, cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.DiscLR, cfg.Schedule = *epochs, *maxSteps, *batch, *lr, *discLR, *schedule
	cfg.Seed, cfg.Quantile, cfg.AdvWeight, cfg.Checkpoint, cfg.Denoise = *seed, *quantile, *adv, *ckpt, *denoise
	cfg.Student.Width, cfg.Student.Depth, cfg.Student.SEReduction = *width, *depth, *seRed
	// --sigma 0 (or below) picks the blur by modality.
	sigmaOpt, sigmaAuto := 0.0, true
	if *sigma > 0 {
		sigmaOpt, sigmaAuto = *sigma, false
	}
	if *weights != "" && !training.ParseScales(*weights, &cfg.Map.Weights) {
		fmt.Fprintf(os.Stderr, "multiad train: --scale-weights %q: want three numbers\n", *weights)
		return 2
	}
	pcfg := preprocess.Default(*size)
	pcfg.Mode = *mode
	pcfg.Resize = *resize
	if *window != "" {
		c, w, err := preprocess.ParseWindow(*window)
		if err != nil {
			fmt.Fprintln(os.Stderr, "multiad train:", err)
			return 2
		}
		pcfg.WindowCenter, pcfg.WindowWidth = c, w
	}
	var feats []string
	if *teacherFeats != "" {
		feats = strings.Split(*teacherFeats, ",")
	}
	res, err := training.Run(ctx, training.Options{
		Data: *data, Out: *out, Teacher: *teacherPath, TeacherFeatures: feats, Train: cfg, Preprocess: pcfg,
		Augment: *augment, Shift: *shift, HardMining: *hard, Fusion: *fusion, FeaturePool: *pool, Sigma: sigmaOpt, SigmaAuto: sigmaAuto, ValFraction: *valFrac, MaxImages: *maxImages, Threads: *threads, VerifyExport: *verify,
		Head: *head, BankSize: *bankSize, CoresetProj: *coresetProj,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad train:", err)
		return 1
	}
	s := res.Bundle.Manifest.Scores
	fmt.Printf("bundle %s: %d images, threshold %.6f, score range [%.4f, %.4f], %.0fs\n",
		*out, res.Images, s.Threshold, s.Min, s.Max, res.Elapsed.Seconds())
	return 0
}
