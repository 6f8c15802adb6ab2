package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	gcs "cloud.google.com/go/storage"
)

// Remove deletes the file or object at uri. A missing one is not an error.
func Remove(ctx context.Context, uri string) error {
	if IsRemote(uri) {
		o, err := object(uri)
		if err != nil {
			return err
		}
		if err := o.Delete(ctx); err != nil && !errors.Is(err, gcs.ErrObjectNotExist) {
			return fmt.Errorf("storage: deleting %s: %w", uri, err)
		}
		return nil
	}
	p, err := localPath(uri)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// RemoveAll deletes a folder: every object under a GCS prefix, or a local
// directory tree. A missing folder is not an error.
func RemoveAll(ctx context.Context, dir string) error {
	if !IsRemote(dir) {
		p, err := localPath(dir)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		return nil
	}
	files, err := List(ctx, dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, f := range files {
		if err := Remove(ctx, f); err != nil {
			return err
		}
	}
	return nil
}
