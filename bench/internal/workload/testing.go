package workload

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

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
