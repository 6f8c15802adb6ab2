package report

import (
	"context"
	"fmt"
	"strings"

	"github.com/multiad/multiad/io/storage"
)

// Commit moves the outputs staged in stage into out, replacing an earlier
// run's: locally by renames, on GCS by copy-then-delete. summary.json is
// removed first and put in place last, so an interrupted commit never
// leaves a summary beside outputs it does not describe. stage is removed.
func Commit(ctx context.Context, stage, out string) error {
	files, err := storage.List(ctx, stage)
	if err != nil {
		return fmt.Errorf("report: commit: %w", err)
	}
	var rels []string
	hasSummary := false
	for _, f := range files {
		r := storage.Rel(stage, f)
		switch {
		case IsSidecar(r):
		case r == SummaryFile:
			hasSummary = true
		default:
			rels = append(rels, r)
		}
	}
	if !hasSummary {
		return fmt.Errorf("report: commit: %s has no %s", stage, SummaryFile)
	}
	if err := remove(ctx, storage.Join(out, SummaryFile)); err != nil {
		return err
	}
	for _, d := range []string{HeatmapDir, MaskDir, RawMapDir} {
		if err := removeAll(ctx, storage.Join(out, d)); err != nil {
			return err
		}
	}
	for _, r := range rels {
		if err := move(ctx, storage.Join(stage, r), storage.Join(out, r)); err != nil {
			return err
		}
	}
	if err := move(ctx, storage.Join(stage, SummaryFile), storage.Join(out, SummaryFile)); err != nil {
		return err
	}
	return Discard(ctx, stage)
}

// IsSidecar reports whether rel, a path relative to a staging folder,
// names a hand-over file between the pipeline and the driver: a top-level
// file whose name starts with "_" (the digest, the study digest, a
// ledger's new entries). Commit does not move sidecars; they go with the
// staging folder.
func IsSidecar(rel string) bool { return strings.HasPrefix(rel, "_") && !strings.Contains(rel, "/") }

// Discard removes a staging folder.
func Discard(ctx context.Context, stage string) error {
	return removeAll(ctx, stage)
}

func move(ctx context.Context, src, dst string) error {
	if err := storage.Rename(ctx, src, dst); err != nil {
		return fmt.Errorf("report: commit: %w", err)
	}
	return nil
}

// remove deletes one file or object; a missing one is not an error.
func remove(ctx context.Context, uri string) error { return storage.Remove(ctx, uri) }

// removeAll deletes a folder (every object under a GCS prefix).
func removeAll(ctx context.Context, dir string) error { return storage.RemoveAll(ctx, dir) }
