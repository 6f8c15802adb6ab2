package training

import (
	"fmt"
	"math"
	"time"

	"github.com/multiad/multiad/model/bank"
	"github.com/multiad/multiad/model/export"
	"github.com/multiad/multiad/model/train"
)

// DefaultBankSize is the number of memory-bank vectors kept by coreset
// selection when Options.BankSize is 0: 2.5% of the tiles' 656k training
// patches at 256 px. Measured with the shipped settings (bench/ACCURACY.md,
// "make eval with the shipped defaults"): 16,384 against 4,096 raised the
// tiles' image / pixel AUROC / AU-PRO from 0.963 / 0.782 / 0.740 to
// 0.969 / 0.824 / 0.754 and left lgg_flair level (0.849 / 0.972 / 0.848
// against 0.855 / 0.970 / 0.845). The bank's MatMul costs about
// 1024·16384·145·2 ≈ 4.9 GFLOP per 256 px image and selection k·N·64
// multiply-adds at most (a few minutes on 2 cores for the tiles).
const DefaultBankSize = 16384

// DefaultFusedBankSize is the bank size of the fused head when
// Options.BankSize is 0: a quarter of DefaultBankSize, because the fused
// head also runs the student and must score at no less than half the
// student-only rate. Measured on the tiles at 256 px, --threads 2, 632
// images, two runs each (bench/ACCURACY.md, "Scoring cost per head"):
// student 37.8 / 38.4 img/s, fused with 4,096 vectors 22.2 / 22.3 (0.58×),
// with 8,192 19.7 / 20.0 (0.52×), with 16,384 15.6 of 40.4 (0.39×).
const DefaultFusedBankSize = 4096

// BankSize returns the memory-bank size for head when opt (Options.BankSize)
// is 0: DefaultFusedBankSize for the fused head, DefaultBankSize otherwise.
func BankSize(opt int, head export.Head) int {
	switch {
	case opt != 0:
		return opt
	case head == export.HeadFused:
		return DefaultFusedBankSize
	}
	return DefaultBankSize
}

// DefaultCoresetProj is the dimension of the random projection the coreset
// is selected in when Options.CoresetProj is 0.
const DefaultCoresetProj = 64

// AutoHead is the head "auto" resolves to for a training set of medical
// images (DICOM, NIfTI) or not: the bank for both. Measured with the
// shipped settings at 256 px (bench/ACCURACY.md, "Teacher, resize and
// heads"): on the magnetic tiles the bank head (EdgeTPU teacher) scores
// image / pixel AUROC / AU-PRO 0.963 / 0.782 / 0.740 against the student's
// 0.892 / 0.802 / 0.692; on lgg_flair (MobileNetV2) 0.855 / 0.970 / 0.845
// against the student's 0.860 / 0.967 / 0.834, and it trains in minutes.
func AutoHead(medical bool) export.Head {
	_ = medical // one rule for both today; the parameter keeps the per-modality hook
	return export.HeadBank
}

// resolveHead resolves Options.Head.
func resolveHead(opt string, medical bool) (export.Head, error) {
	if opt == "auto" {
		return AutoHead(medical), nil
	}
	h, err := export.ParseHead(opt)
	if err != nil {
		return "", fmt.Errorf("training: head %q: want student, bank, fused or auto", opt)
	}
	return h, nil
}

// buildBank selects the memory bank from the training images' features.
func buildBank(ss []train.Sample, S, n int, opt Options, logf func(string, ...any)) (*bank.Bank, error) {
	t0 := time.Now()
	f8s, f16s := make([][]float32, len(ss)), make([][]float32, len(ss))
	for i, s := range ss {
		f8s[i], f16s[i] = s.Feats[1], s.Feats[2]
	}
	proj := opt.CoresetProj
	switch {
	case proj == 0:
		proj = DefaultCoresetProj
	case proj < 0:
		proj = 0 // the full space
	}
	progress := func(chosen, n int) {
		logf("coreset: %d of %d bank vectors chosen, %.0fs", chosen, n, time.Since(t0).Seconds())
	}
	bk, err := bank.Build(f8s, f16s, S, n, bank.CoresetOptions{Proj: proj, Seed: opt.Train.Seed, Threads: opt.Threads, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("training: memory bank: %w", err)
	}
	logf("memory bank: %d of %d patch vectors (%d+%d channels) by greedy coreset in a %d-d projection (0: none), covering radius %.4g, %.1fs",
		bk.M(), bk.Patches, bk.C8, bk.C16, proj, bk.Radius, time.Since(t0).Seconds())
	return bk, nil
}

// headMaps returns the maps and scores of ss under head (bank or fused),
// computed in Go (model/bank's brute-force reference, and GoMLX for the
// student), and for the fused head the norms, taken from these very maps:
// each head's mean and standard deviation over every pixel of every map of ss.
func headMaps(head export.Head, bk *bank.Bank, res *train.Result, ss []train.Sample, threads int) (maps [][]float32, scores []float64, norms [2]export.Norm, err error) {
	sigma := res.Config.Map.Sigma
	bmaps := make([][]float32, len(ss))
	for i, s := range ss {
		if bmaps[i], _, err = bk.Score(s.Feats[1], s.Feats[2], sigma, threads); err != nil {
			return nil, nil, norms, fmt.Errorf("training: memory bank map of image %d: %w", i, err)
		}
	}
	maps = bmaps
	if head == export.HeadFused {
		smaps, _, err := train.Score(res.Config, res.Student, ss)
		if err != nil {
			return nil, nil, norms, err
		}
		norms = [2]export.Norm{pixelNorm(smaps), pixelNorm(bmaps)}
		maps = make([][]float32, len(ss))
		for i := range ss {
			maps[i] = export.Fuse(smaps[i], bmaps[i], norms)
		}
	}
	scores = make([]float64, len(maps))
	for i, m := range maps {
		scores[i] = math.Inf(-1)
		for _, v := range m {
			scores[i] = math.Max(scores[i], float64(v))
		}
	}
	return maps, scores, norms, nil
}

// pixelNorm is the mean and standard deviation of every pixel of maps.
func pixelNorm(maps [][]float32) export.Norm {
	var n, s1, s2 float64
	for _, m := range maps {
		for _, v := range m {
			n++
			s1 += float64(v)
		}
	}
	mean := s1 / n
	for _, m := range maps {
		for _, v := range m {
			s2 += (float64(v) - mean) * (float64(v) - mean)
		}
	}
	return export.Norm{Mean: mean, Std: math.Sqrt(s2 / n)}
}
