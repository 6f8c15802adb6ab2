package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/inference/inferencetest"
)

// predictJSON runs `multiad predict --json args...` in process and returns
// its exit code and its lines as JSON objects.
func predictJSON(t *testing.T, args ...string) (int, []map[string]any) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); done <- b }()
	code := runPredict(context.Background(), append([]string{"--json", "--device", "cpu", "--threads", "1"}, args...))
	w.Close()
	os.Stdout = stdout
	out := <-done
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("predict --json printed %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return code, lines
}

func pngSize(t *testing.T, path string) (w, h int, img image.Image) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err = png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img.Bounds().Dx(), img.Bounds().Dy(), img
}

// tilePNG writes a w×h gray PNG, bright with a dark square (which the test
// bundle scores as anomalous).
func tilePNG(t *testing.T, path string, w, h, shade int) {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			v := 230
			if x > w/3 && x < w/2 && y > h/3 && y < 2*h/3 {
				v = shade
			}
			img.SetGray(x, y, color.Gray{Y: uint8(v)})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pyShape returns the (rows, cols) of a DICOM file (pydicom) or of a
// NIfTI volume's slices along its last axis (nibabel; io/nifti's slices have
// Rows = dim[1] and Cols = dim[2]): the references
// for the heatmaps' size.
func pyShape(t *testing.T, path string) (rows, cols int) {
	t.Helper()
	script := `import sys
p=sys.argv[1]
if p.endswith(".dcm"):
    import pydicom; d=pydicom.dcmread(p); print(d.Rows, d.Columns)
else:
    import nibabel; s=nibabel.load(p).shape; print(s[0], s[1])`
	out, err := exec.Command("/usr/bin/python3", "-c", script, path).Output()
	if err != nil {
		t.Fatalf("pydicom/nibabel on %s: %v", path, err)
	}
	if _, err := fmtSscan(string(out), &rows, &cols); err != nil {
		t.Fatal(err)
	}
	return rows, cols
}

// Heatmaps and masks have each input's own size (a non-square tile, a
// DICOM slice, NIfTI slices), a/x.png and b/x.png get different files, and
// the mask is where the 16-bit map is above the threshold (32768).
func TestPredictOutputs(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "bundle")
	if err := inferencetest.WriteBundle(model, 32); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a", "x.png"), filepath.Join(dir, "b", "x.png")
	tilePNG(t, a, 247, 92, 10)
	tilePNG(t, b, 120, 300, 40)
	dcm := shared.MustPath(t, "data", "medical", "lgg_dicom", "series", "TCGA_FG_A4MU_20030903", "IM0027.dcm")
	nii := shared.MustPath(t, "data", "decoders", "nifti", "standard.nii.gz")
	heat := filepath.Join(dir, "heat")
	code, lines := predictJSON(t, "--model", model, "--heatmaps", heat, "--raw-maps", a, b, dcm, nii)
	if code != 0 {
		t.Fatalf("exit %d, lines %v", code, lines)
	}
	want := map[string][2]int{a: {92, 247}, b: {300, 120}}
	for _, p := range []string{dcm, nii} {
		r, c := pyShape(t, p)
		want[p] = [2]int{r, c}
	}
	seen := map[string]bool{}
	masks := 0
	for _, l := range lines {
		uri, _ := l["uri"].(string)
		sz, ok := want[uri]
		if !ok {
			t.Fatalf("line for %q", uri)
		}
		if l["anomalous"] == nil || l["score"] == nil || l["normalized_score"] == nil {
			t.Errorf("%s: no verdict or scores in %v", uri, l)
		}
		for _, k := range []string{"heatmap", "raw_map", "mask"} {
			p, _ := l[k].(string)
			if p == "" {
				if k != "mask" || l["anomalous"] == true {
					t.Errorf("%s: no %s in %v", uri, k, l)
				}
				continue
			}
			if seen[p] {
				t.Errorf("%s: %s %s written twice", uri, k, p)
			}
			seen[p] = true
			if w, h, _ := pngSize(t, p); w != sz[1] || h != sz[0] {
				t.Errorf("%s: %s is %dx%d, the image %dx%d", uri, k, w, h, sz[1], sz[0])
			}
		}
		if mp, _ := l["mask"].(string); mp != "" {
			masks++
			_, _, mi := pngSize(t, mp)
			_, _, ri := pngSize(t, l["raw_map"].(string))
			set := 0
			for y := 0; y < sz[0]; y++ {
				for x := 0; x < sz[1]; x++ {
					m := mi.(*image.Gray).GrayAt(x, y).Y
					v := ri.(*image.Gray16).Gray16At(x, y).Y
					if (m == 255) != (v > 32768) && v != 32768 && v != 32767 {
						t.Fatalf("%s: mask %d at (%d,%d), raw map %d", uri, m, x, y, v)
					}
					if m == 255 {
						set++
					}
				}
			}
			if set == 0 {
				t.Errorf("%s: flagged, but its mask is empty", uri)
			}
		}
	}
	if masks == 0 || len(lines) < 4 {
		t.Errorf("%d lines, %d masks", len(lines), masks)
	}
	if !strings.Contains(lines[0]["heatmap"].(string), "x_") || lines[0]["heatmap"] == lines[1]["heatmap"] {
		t.Errorf("a/x.png and b/x.png: heatmaps %v and %v", lines[0]["heatmap"], lines[1]["heatmap"])
	}

	// A missing file: an error, no verdict, exit status 1.
	code, lines = predictJSON(t, "--model", model, "--heatmaps", "", filepath.Join(dir, "missing.png"), a)
	if code == 0 || len(lines) != 2 {
		t.Fatalf("missing input: exit %d, lines %v", code, lines)
	}
	for _, k := range []string{"anomalous", "score", "normalized_score"} {
		if _, ok := lines[0][k]; ok {
			t.Errorf("failed input carries %q: %v", k, lines[0])
		}
	}
	if lines[0]["error"] == nil || lines[1]["anomalous"] == nil {
		t.Errorf("lines %v", lines)
	}
}

func fmtSscan(s string, a ...any) (int, error) { return fmt.Sscan(s, a...) }
