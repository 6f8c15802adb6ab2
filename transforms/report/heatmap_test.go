package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

// Entries of matplotlib's viridis table (lib/matplotlib/_cm_listed.py)
// that are not among Viridis's anchors.
func TestViridis(t *testing.T) {
	for _, c := range []struct {
		i   int
		rgb [3]float64
	}{
		{8, [3]float64{0.277018, 0.050344, 0.375715}},
		{56, [3]float64{0.244972, 0.287675, 0.537260}},
		{100, [3]float64{0.166617, 0.463708, 0.558119}},
		{200, [3]float64{0.440137, 0.811138, 0.340967}},
		{250, [3]float64{0.945636, 0.899815, 0.112838}},
		{0, [3]float64{0.267004, 0.004874, 0.329415}},
		{255, [3]float64{0.993248, 0.906157, 0.143936}},
	} {
		got := Viridis(float64(c.i) / 255)
		for k, v := range []uint8{got.R, got.G, got.B} {
			if d := math.Abs(float64(v) - 255*c.rgb[k]); d > 1.5 {
				t.Errorf("Viridis(%d/255) = %v, matplotlib %v (channel %d off by %.2f/255)", c.i, got, c.rgb, k, d)
			}
		}
	}
	if Viridis(-1) != Viridis(0) || Viridis(2) != Viridis(1) || Viridis(math.NaN()) != Viridis(0) {
		t.Error("Viridis does not clip")
	}
}

// TestViridisRounding checks Viridis against the same interpolation
// rounded with math.Round, at every anchor, just below and above each, and
// at 200,001 points between: the cheaper rounding must give the same
// colours everywhere.
func TestViridisRounding(t *testing.T) {
	ref := func(t float64) color.RGBA {
		if !(t > 0) {
			t = 0
		} else if t > 1 {
			t = 1
		}
		x := t * 255
		i := 0
		for i < len(viridisAnchors)-2 && viridisAnchors[i+1][0] <= x {
			i++
		}
		a, b := viridisAnchors[i], viridisAnchors[i+1]
		f := (x - a[0]) / (b[0] - a[0])
		ch := func(k int) uint8 { return uint8(math.Round(255 * (a[k] + (b[k]-a[k])*f))) }
		return color.RGBA{R: ch(1), G: ch(2), B: ch(3), A: 255}
	}
	var ts []float64
	for _, a := range viridisAnchors {
		x := a[0] / 255
		ts = append(ts, x, math.Nextafter(x, -1), math.Nextafter(x, 2))
	}
	for i := 0; i <= 200000; i++ {
		ts = append(ts, float64(i)/200000)
	}
	ts = append(ts, -1, 2, math.NaN(), math.Inf(1), math.Inf(-1))
	for _, x := range ts {
		if got, want := Viridis(x), ref(x); got != want {
			t.Fatalf("Viridis(%v) = %v, rounded with math.Round %v", x, got, want)
		}
	}
}

// BenchmarkViridis colours 65,536 values spread over [0, 1].
func BenchmarkViridis(b *testing.B) {
	var sum int
	for b.Loop() {
		for i := range 1 << 16 {
			sum += int(Viridis(float64(i) / (1 << 16)).G)
		}
	}
	_ = sum
}

// pilUpsample is the independent reference for FullMap: Pillow's
// bilinear resize of a float image (Debian's python3-pil), which samples
// at half-pixel centres as FullMap does.
func pilUpsample(t *testing.T, m []float32, s, rows, cols int) []float64 {
	t.Helper()
	in, _ := json.Marshal(m)
	script := fmt.Sprintf(`import json,sys
from PIL import Image
v=json.load(sys.stdin)
im=Image.new("F",(%d,%d)); im.putdata(v)
o=im.resize((%d,%d),Image.BILINEAR)
json.dump(list(o.getdata()),sys.stdout)`, s, s, cols, rows)
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		py = "python3"
	}
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("Pillow (Debian python3-pil) is the reference: %v\n%s", err, stderr.String())
	}
	var ref []float64
	if err := json.Unmarshal(out, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// A non-square image's heatmap, mask and raw map have its own size, and
// the mask is the upsampled map above the pixel threshold.
func TestHeatmapAtImageSize(t *testing.T) {
	const s = 32
	for _, sz := range [][2]int{{37, 90}, {247, 592}, {33, 40}} {
		rows, cols := sz[0], sz[1]
		r := testResult("tile.png", s, 0.9)
		r.Rows, r.Cols = rows, cols
		cal := bundle.Scores{PixelThreshold: 0.3, PixelMin: 0, PixelMax: 0.8}
		ref := pilUpsample(t, r.Map, s, rows, cols)
		full := r.FullMap()
		if rows >= s && cols >= s { // upsampling: plain bilinear
			for i := range ref {
				if math.Abs(float64(full[i])-ref[i]) > 1e-5 {
					t.Fatalf("%dx%d: FullMap[%d] = %g, torch %g", rows, cols, i, full[i], ref[i])
				}
			}
		}
		heat, err := Heatmap(r, cal)
		if err != nil {
			t.Fatal(err)
		}
		mask, err := PredictedMask(r, cal)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := RawMap(r, cal)
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string]image.Rectangle{"heatmap": heat.Bounds(), "mask": mask.Bounds(), "raw map": raw.Bounds()} {
			if b.Dx() != cols || b.Dy() != rows {
				t.Errorf("%s is %dx%d, the image %dx%d", name, b.Dx(), b.Dy(), cols, rows)
			}
		}
		set, differ := 0, 0
		for i, v := range ref {
			want := v > cal.PixelThreshold
			if math.Abs(v-cal.PixelThreshold) < 1e-5 {
				continue // within float32 rounding of the threshold
			}
			if (mask.Pix[i] == 255) != want || mask.Pix[i] != 0 && mask.Pix[i] != 255 {
				differ++
			}
			if want {
				set++
			}
			// The raw map holds the normalised pixel score.
			if got := float64(raw.Gray16At(i%cols, i/cols).Y) / 65535; rows >= s/2 && math.Abs(got-cal.NormalizePixel(v)) > 1e-4 {
				t.Fatalf("raw map %g at %d, want %g", got, i, cal.NormalizePixel(v))
			}
		}
		if differ > 0 || set == 0 || set == rows*cols {
			t.Errorf("%dx%d: %d mask pixels differ from map > threshold (%d set)", rows, cols, differ, set)
		}
		// Colours are fixed to the bundle's scale: the hottest pixel is
		// yellow-ish (normalised score 1), a cold one purple-tinted gray.
		hy, hx := rows/3, cols/2
		if c := heat.RGBAAt(hx, hy); !(c.R > 150 && c.G > 150 && c.B < 120) {
			t.Errorf("%dx%d: hottest pixel %v is not viridis yellow", rows, cols, c)
		}
	}
	// A map cannot be drawn without the model-size map: a typed error.
	_, err := Heatmap(score.Result{Item: read.Item{URI: "x.png"}, Size: 4}, bundle.Scores{})
	var he *HeatmapError
	if !errorsAs(err, &he) || he.URI != "x.png" {
		t.Errorf("Heatmap without a map: %v", err)
	}
}

func errorsAs(err error, target **HeatmapError) bool {
	e, ok := err.(*HeatmapError)
	if ok {
		*target = e
	}
	return ok
}

func TestNormalize(t *testing.T) {
	sc := bundle.Scores{Threshold: 2, Min: 1, Max: 5, PixelThreshold: 0.2, PixelMin: 0, PixelMax: 0.4}
	for _, c := range []struct{ v, want float64 }{{2, 0.5}, {3, 0.75}, {4, 1}, {9, 1}, {1, 0.25}, {0, 0}, {-5, 0}} {
		if got := sc.Normalize(c.v); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Normalize(%g) = %g, want %g", c.v, got, c.want)
		}
	}
	if got := sc.NormalizePixel(0.3); math.Abs(got-0.75) > 1e-12 {
		t.Errorf("NormalizePixel(0.3) = %g, want 0.75", got)
	}
	// Without a range only the side of the threshold is known.
	flat := bundle.Scores{Threshold: 1, Min: 1, Max: 1}
	if flat.Normalize(1.001) != 1 || flat.Normalize(0.999) != 0 || flat.Normalize(1) != 0.5 {
		t.Error("a flat range does not split at the threshold")
	}
}

// hostile is a file name that would run script if it were not escaped.
const hostile = `/data/<img src=x onerror="document.title='pwned'">.png`

// TestReportInChromium renders a run without labels, with a failure list,
// ground-truth masks and a hostile file name, in headless Chromium: the
// rendered DOM holds the note, the failure list, the colour bar and the
// name as text; the screenshot shows viridis heatmaps and red outlines.
func TestReportInChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("headless Chromium is needed to check report.html: %s missing (Debian package chromium): %v", chromium, err)
	}
	ctx := context.Background()
	dir := t.TempDir()
	cal := bundle.Scores{Threshold: 0.5, PixelThreshold: 0.3, PixelMin: 0, PixelMax: 0.8}
	d := Digest{Inputs: 130, Scored: 4, Failed: 126, Flagged: 4, Domains: map[string]int{"MR 1ch 16-bit": 4}}
	for i := 0; i < 4; i++ {
		uri := fmt.Sprintf("tile%d.png", i)
		if i == 0 {
			uri = hostile
		}
		r := testResult(uri, 32, 0.9-0.1*float64(i))
		r.Rows, r.Cols = 60, 150
		r.Normalized = cal.Normalize(r.Score)
		r.Truth = make([]uint8, 60*150)
		for y := 10; y < 30; y++ {
			for x := 60; x < 90; x++ {
				r.Truth[y*150+x] = 1
			}
		}
		g, err := NewGalleryEntry(r, cal)
		if err != nil {
			t.Fatal(err)
		}
		d.Gallery = append(d.Gallery, g)
		d.Points = append(d.Points, Point{Score: r.Score, Label: -1})
	}
	for i := 0; i < 126; i++ {
		uri := fmt.Sprintf("broken%03d.dcm", i)
		if i == 0 {
			uri = hostile
		}
		if i < MaxListedFailures {
			d.Failures = append(d.Failures, FailureRecord{URI: uri, Error: "decode: not a DICOM file"})
		}
	}
	b, _ := json.Marshal(d)
	if err := os.WriteFile(filepath.Join(dir, digestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := Finish(ctx, dir, RunInfo{Input: "in", Output: "out", Threshold: 0.5, Started: time.Unix(0, 0),
		TrainingDomains: map[string]int{"picture 1ch 8-bit": 200}})
	if err != nil {
		t.Fatal(err)
	}
	// summary.json: no metrics, the note, and both warnings.
	sj, _ := os.ReadFile(filepath.Join(dir, SummaryFile))
	var js map[string]any
	if err := json.Unmarshal(sj, &js); err != nil {
		t.Fatal(err)
	}
	if js["metrics"] != nil || !strings.Contains(fmt.Sprint(js["notes"]), "no labels found") || js["flagged"] != 4.0 {
		t.Errorf("summary.json metrics %v, notes %v, flagged %v", js["metrics"], js["notes"], js["flagged"])
	}
	if w := fmt.Sprint(sum.Warnings); len(sum.Warnings) != 2 || !strings.Contains(w, "out of domain: 4 of 4") || !strings.Contains(w, "MR 1ch 16-bit (4)") || !strings.Contains(w, "4 of 4 images (100%) are flagged") {
		t.Errorf("warnings %q", sum.Warnings)
	}
	page := filepath.Join(dir, ReportFile)
	args := func(extra ...string) []string {
		return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--virtual-time-budget=2000"}, append(extra, "file://"+page)...)
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(cctx, chromium, args("--dump-dom")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	text := string(dom)
	for _, want := range []string{"no labels found", "Failed inputs (126)", "… and 26 more in failures.jsonl", "broken099.dcm",
		"linearGradient", "0.5 pixel threshold", "red outline", "ground truth outlined", "out of domain", "overlap (normal and anomalous)",
		"150×60", "&lt;img src=x onerror="} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered report lacks %q", want)
		}
	}
	if strings.Contains(text, "broken100.dcm") || strings.Contains(text, "pwned") && !strings.Contains(text, "&lt;img") || strings.Contains(text, `<img src="x"`) || strings.Contains(text, "<title>pwned") {
		t.Error("report lists more than 100 failures or lets the hostile name in as markup")
	}
	if strings.Contains(text, "images 0") {
		t.Error("report says images 0")
	}
	shot := filepath.Join(dir, "shot.png")
	if out, err := exec.CommandContext(cctx, chromium, args("--screenshot="+shot, "--window-size=1300,2600")...).CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	if keep := os.Getenv("MULTIAD_REPORT_SHOT"); keep != "" {
		b, err := os.ReadFile(shot)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keep, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	yellow, red, teal := 0, 0, 0
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y++ {
		for x := bnd.Min.X; x < bnd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			r, g, b = r>>8, g>>8, b>>8
			switch {
			case r > 200 && g < 90 && b < 90:
				red++
			case r > 170 && g > 170 && b < 110:
				yellow++
			case r < 80 && g > 110 && b > 100 && g > r+50:
				teal++
			}
		}
	}
	t.Logf("screenshot %v: %d yellow, %d teal, %d red pixels", bnd.Size(), yellow, teal, red)
	if yellow < 100 || teal < 100 || red < 100 {
		t.Errorf("screenshot lacks heatmap colours or outlines: %d yellow, %d teal, %d red pixels", yellow, teal, red)
	}
}
