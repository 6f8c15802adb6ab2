package workload

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/inference/inferencetest"
)

// Smoke prepares a harness smoke test: a tiny test bundle and n shared tile
// images (SmallInput) in t's temporary folder. It skips t when the shared
// folder is missing (shared.MustPath).
func Smoke(t testing.TB, n int) (model, input string) {
	t.Helper()
	root := shared.MustPath(t)
	dir := t.TempDir()
	model = filepath.Join(dir, "bundle")
	if err := inferencetest.WriteBundle(model, 32); err != nil {
		t.Fatal(err)
	}
	input, err := SmallInput(root, dir, n)
	if err != nil {
		t.Fatal(err)
	}
	return model, input
}

// Binary returns $MULTIAD_BIN, else the repository's bin/multiad seen from
// a harness folder (bench/cmd/NAME, where its tests run) when `make build`
// has made it, else "".
func Binary() string {
	p := os.Getenv("MULTIAD_BIN")
	if p == "" {
		p, _ = filepath.Abs("../../../bin/multiad")
	}
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// SmallInput makes a folder in dir with symbolic links to the first n test
// images of the shared magnetic tiles, for the harnesses' smoke tests.
func SmallInput(shared, dir string, n int) (string, error) {
	src, err := filepath.Glob(filepath.Join(shared, "data", "industrial", "magnetic_tile", "test", "*", "*.jpg"))
	if err != nil {
		return "", err
	}
	if len(src) < n {
		return "", fmt.Errorf("workload: %d tile images under %s, want %d", len(src), shared, n)
	}
	sort.Strings(src)
	out := filepath.Join(dir, "images")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	for i := 0; i < n; i++ {
		// Spread over the defect types.
		s := src[i*len(src)/n]
		if err := os.Symlink(s, filepath.Join(out, fmt.Sprintf("%02d_%s", i, filepath.Base(s)))); err != nil {
			return "", err
		}
	}
	return out, nil
}
