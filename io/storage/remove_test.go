package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/multiad/multiad/io/storage"
)

func TestRemoveLocal(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := filepath.Join(dir, "a", "b.txt")
	if err := storage.WriteFileAtomic(ctx, f, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := storage.Remove(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Errorf("%s still exists", f)
	}
	if err := storage.Remove(ctx, f); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
	if err := storage.WriteFileAtomic(ctx, filepath.Join(dir, "a", "c", "d.txt"), []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := storage.RemoveAll(ctx, "file://"+filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Error("RemoveAll left the folder")
	}
}

func TestRemoveGCS(t *testing.T) {
	ctx := context.Background()
	emu.Put("rmbkt", "run/a.txt", []byte("a"))
	emu.Put("rmbkt", "run/sub/b.txt", []byte("b"))
	emu.Put("rmbkt", "keep/c.txt", []byte("c"))
	if err := storage.Remove(ctx, "gs://rmbkt/run/a.txt"); err != nil {
		t.Fatal(err)
	}
	if err := storage.Remove(ctx, "gs://rmbkt/run/a.txt"); err != nil {
		t.Errorf("removing a missing object: %v", err)
	}
	if err := storage.RemoveAll(ctx, "gs://rmbkt/run"); err != nil {
		t.Fatal(err)
	}
	left, err := storage.List(ctx, "gs://rmbkt/")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != "gs://rmbkt/keep/c.txt" {
		t.Errorf("left %v, want only keep/c.txt", left)
	}
}
