package scoring

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/report"
)

// ErrEarlierRun is returned (wrapped in an *OutputError) when the output
// folder holds an earlier run's outputs and Options.Overwrite is not set.
var ErrEarlierRun = errors.New("holds an earlier run's outputs")

// BundleError says why the model bundle cannot be used.
type BundleError struct {
	// Model is the bundle URI (Options.Model).
	Model string
	Err   error
}

func (e *BundleError) Error() string { return "score: " + e.Err.Error() }

func (e *BundleError) Unwrap() error { return e.Err }

// OutputError says why the output folder cannot take a run's outputs.
type OutputError struct {
	// Output is the folder (Options.Output).
	Output string
	// Found is the earlier run's file that was found, for ErrEarlierRun.
	Found string
	Err   error
}

func (e *OutputError) Error() string {
	if errors.Is(e.Err, ErrEarlierRun) {
		return fmt.Sprintf("score: output %s %v (%s)", e.Output, e.Err, e.Found)
	}
	return fmt.Sprintf("score: output %s is not writable: %v", e.Output, e.Err)
}

func (e *OutputError) Unwrap() error { return e.Err }

// Check makes the checks Run makes before it builds the pipeline, so that
// a caller can stop early with a short message: the options are valid, a
// local input exists, the bundle loads (format version and graph checksum),
// and the output folder can be written (it is created when missing, and a
// probe file is written and removed) and, unless Overwrite or State is set,
// holds no earlier run's outputs. A bundle that does not load gives a
// *BundleError; an output folder that cannot take the run an *OutputError,
// wrapping ErrEarlierRun when it holds an earlier run.
func Check(ctx context.Context, opt Options) error {
	_, err := check(ctx, &opt)
	return err
}

// check is Check, returning the bundle's manifest information; it leaves
// *opt validated (Validate).
func check(ctx context.Context, opt *Options) (*modelInfo, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if err := checkLocalInput(opt.Input); err != nil {
		return nil, err
	}
	info, err := loadModelInfo(ctx, opt.Model)
	if err != nil {
		return nil, err // a *BundleError
	}
	if err := checkOutput(ctx, *opt); err != nil {
		return nil, err
	}
	return info, nil
}

// checkOutput checks that opt.Output can be written and, for a run that
// is neither incremental (those write runs/<time>/) nor Overwrite, that it
// holds no summary.json or scores.jsonl of an earlier run.
func checkOutput(ctx context.Context, opt Options) error {
	out := opt.Output
	if opt.State == "" && !opt.Overwrite {
		for _, name := range []string{report.SummaryFile, report.ScoresFile} {
			if _, err := storage.Stat(ctx, storage.Join(out, name)); err == nil {
				return &OutputError{Output: out, Found: name, Err: ErrEarlierRun}
			}
		}
	}
	id := make([]byte, 4)
	rand.Read(id)
	probe := storage.Join(out, ".multiad-probe-"+hex.EncodeToString(id))
	if err := storage.WriteFileAtomic(ctx, probe, nil); err != nil {
		return &OutputError{Output: out, Err: err}
	}
	if err := storage.Remove(ctx, probe); err != nil {
		return &OutputError{Output: out, Err: err}
	}
	return nil
}
