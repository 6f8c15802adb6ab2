package report

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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
		r := strings.TrimPrefix(strings.TrimPrefix(filepathToSlash(f), filepathToSlash(stage)), "/")
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

func filepathToSlash(p string) string {
	if storage.IsRemote(p) || strings.HasPrefix(p, "file://") {
		return p
	}
	return filepath.ToSlash(p)
}

// localOf returns the file system path of a local URI.
func localOf(uri string) string { return strings.TrimPrefix(uri, "file://") }

func move(ctx context.Context, src, dst string) error {
	if !storage.IsRemote(src) && !storage.IsRemote(dst) {
		d := localOf(dst)
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fmt.Errorf("report: commit: %w", err)
		}
		if err := os.Rename(localOf(src), d); err != nil {
			return fmt.Errorf("report: commit: %w", err)
		}
		return nil
	}
	data, err := storage.ReadFile(ctx, src, 0)
	if err != nil {
		return fmt.Errorf("report: commit: %w", err)
	}
	if err := storage.WriteFileAtomic(ctx, dst, data); err != nil {
		return fmt.Errorf("report: commit: %w", err)
	}
	return remove(ctx, src)
}

// remove deletes one file or object; a missing one is not an error.
func remove(ctx context.Context, uri string) error { return storage.Remove(ctx, uri) }

// removeAll deletes a folder (every object under a GCS prefix).
func removeAll(ctx context.Context, dir string) error { return storage.RemoveAll(ctx, dir) }
