package report

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/golden"
	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/metrics"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
)

func TestMain(m *testing.M) {
	shared.SkipExamplesIfMissing()
	ptest.Main(m)
}

func goldenCases(t *testing.T) []golden.BinaryCase { return golden.LoadMetrics(t).BinaryCases }

func points(c golden.BinaryCase) []Point {
	pts := make([]Point, len(c.Labels))
	for i := range pts {
		pts[i] = Point{Score: c.Scores[i], Label: c.Labels[i]}
	}
	return pts
}

// The area under the plotted ROC curve (trapezoids) is the AUROC that
// scikit-learn computed, and the PR curve's step area (recall increments ×
// precision) its average precision: the curves drawn are the real ones.
func TestCurvesMatchScikitLearn(t *testing.T) {
	for _, c := range goldenCases(t) {
		roc, pr, err := curves(points(c))
		if err != nil {
			t.Fatal(err)
		}
		var area float64
		for i := 1; i < len(roc); i++ {
			area += (roc[i][0] - roc[i-1][0]) * (roc[i][1] + roc[i-1][1]) / 2
		}
		if math.Abs(area-c.AUROC) > 1e-9 {
			t.Errorf("%s: area under ROC %.12f, scikit-learn AUROC %.12f", c.Name, area, c.AUROC)
		}
		if roc[0] != [2]float64{0, 0} || roc[len(roc)-1] != [2]float64{1, 1} {
			t.Errorf("%s: ROC from %v to %v", c.Name, roc[0], roc[len(roc)-1])
		}
		var ap float64
		for i := 1; i < len(pr); i++ {
			ap += (pr[i][0] - pr[i-1][0]) * pr[i][1]
		}
		if math.Abs(ap-c.AveragePrecision) > 1e-9 {
			t.Errorf("%s: PR step area %.12f, scikit-learn AP %.12f", c.Name, ap, c.AveragePrecision)
		}
	}
}

// The curves report.html draws are metrics.ROCCurve's and
// metrics.PRCurve's points (the PR curve drawn from its point at recall 0),
// read back from the SVG polylines through each plot's frame: unlabelled
// points are left out, tied scores make one vertex, and the PR curve starts
// at precision 1 even when the top-scoring image is normal.
func TestDrawnCurvesAreMetricsCurves(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	random := make([]Point, 200)
	for i := range random {
		random[i] = Point{Score: math.Round(r.Float64()*40) / 40, Label: r.IntN(3) - 1} // ties, a third unlabelled
	}
	for name, pts := range map[string][]Point{
		"top normal":    {{0.9, 0}, {0.8, 1}, {0.8, 0}, {0.5, -1}, {0.4, 1}, {0.1, 1}, {0.1, 0}},
		"top anomalous": {{3, 1}, {2, 0}, {1, 1}, {math.Inf(-1), 0}},
		"random":        random,
	} {
		var labels []int
		var scores []float64
		for _, p := range pts {
			if p.Label == 0 || p.Label == 1 {
				labels, scores = append(labels, p.Label), append(scores, p.Score)
			}
		}
		roc, err := metrics.ROCCurve(labels, scores)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := metrics.PRCurve(labels, scores)
		if err != nil {
			t.Fatal(err)
		}
		var wantROC, wantPR [][2]float64
		for _, p := range roc {
			wantROC = append(wantROC, [2]float64{p.FPR, p.TPR})
		}
		for i := len(pr) - 1; i >= 0; i-- {
			wantPR = append(wantPR, [2]float64{pr[i].Recall, pr[i].Precision})
		}
		drawn := drawnCurves(t, pts)
		if len(drawn) != 2 {
			t.Fatalf("%s: %d curves drawn, want 2", name, len(drawn))
		}
		for k, want := range [][][2]float64{wantROC, wantPR} {
			got := drawn[k]
			if len(got) != len(want) {
				t.Fatalf("%s: curve %d has %d points, metrics %d", name, k, len(got), len(want))
			}
			for i := range want {
				// 0.005 px of rounding in a plot over 100 px wide.
				if math.Abs(got[i][0]-want[i][0]) > 1e-4 || math.Abs(got[i][1]-want[i][1]) > 1e-4 {
					t.Errorf("%s: curve %d point %d drawn at %v, metrics %v", name, k, i, got[i], want[i])
				}
			}
		}
	}
	// Without both classes nothing is drawn; a NaN score says why.
	for _, pts := range [][]Point{{{1, 1}, {0.5, 1}, {0.2, -1}}, {{1, 1}, {math.NaN(), 0}}} {
		html, err := HTML(&Summary{Started: time.Unix(0, 0)}, &Digest{Points: pts})
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(html), "<polyline"); n != 0 {
			t.Errorf("%v: %d curves drawn", pts, n)
		}
		if math.IsNaN(pts[1].Score) != strings.Contains(string(html), "NaN") {
			t.Errorf("%v: the report does not say that a score is NaN", pts)
		}
	}
}

var (
	svgFrame    = regexp.MustCompile(`<rect x="([-0-9.e]+)" y="([-0-9.e]+)" width="([-0-9.e]+)" height="([-0-9.e]+)"`)
	svgPolyline = regexp.MustCompile(`<polyline [^>]*points="([^"]*)"`)
)

// drawnCurves renders report.html for pts and reads back each plotted
// curve's points in the unit square of its frame (the first rect of its
// SVG).
func drawnCurves(t *testing.T, pts []Point) [][][2]float64 {
	t.Helper()
	html, err := HTML(&Summary{Started: time.Unix(0, 0)}, &Digest{Points: pts})
	if err != nil {
		t.Fatal(err)
	}
	var curves [][][2]float64
	for _, svg := range strings.Split(string(html), "<svg")[1:] {
		pl := svgPolyline.FindStringSubmatch(svg)
		if pl == nil {
			continue
		}
		fr := svgFrame.FindStringSubmatch(svg)
		if fr == nil {
			t.Fatalf("a curve without a frame: %s", svg)
		}
		var x0, y0, w, h float64
		for i, p := range []*float64{&x0, &y0, &w, &h} {
			if *p, err = strconv.ParseFloat(fr[i+1], 64); err != nil {
				t.Fatal(err)
			}
		}
		var c [][2]float64
		for _, xy := range strings.Fields(pl[1]) {
			var x, y float64
			if _, err := fmt.Sscanf(xy, "%g,%g", &x, &y); err != nil {
				t.Fatalf("polyline point %q: %v", xy, err)
			}
			c = append(c, [2]float64{(x - x0) / w, 1 - (y-y0)/h})
		}
		curves = append(curves, c)
	}
	return curves
}

func TestHistogram(t *testing.T) {
	h := NewHistogram([]Point{{0, 0}, {0.5, 1}, {1, -1}, {math.NaN(), 0}}, 4, 0.2)
	got := [3][]int{h.Counts[0], h.Counts[1], h.Counts[2]}
	want := [3][]int{{1, 0, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}}
	for k := range want {
		for i := range want[k] {
			if got[k][i] != want[k][i] {
				t.Fatalf("histogram %v, want %v", got, want)
			}
		}
	}
}

func testResult(uri string, size int, sc float64) score.Result {
	r := score.Result{Item: read.Item{URI: uri, Index: -1, Label: 1, MaskIndex: -1}, Score: sc, Anomalous: sc > 0.5, Size: size,
		Map: make([]float32, size*size), Gray: make([]uint8, size*size), Rows: size, Cols: size}
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			r.Gray[y*size+x] = uint8(255 * x / size)
			d := math.Hypot(float64(x-size/2), float64(y-size/3))
			r.Map[y*size+x] = float32(math.Exp(-d * d / 40))
		}
	}
	return r
}

func TestOverlay(t *testing.T) {
	r := testResult("a.png", 32, 0.9)
	img, err := Overlay(r, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The hottest pixel is reddish, a cold one keeps its gray level.
	hot := img.RGBAAt(16, 32/3)
	if !(int(hot.R) > int(hot.G)+60 && int(hot.R) > int(hot.B)+60) {
		t.Errorf("hot pixel %v is not red", hot)
	}
	cold := img.RGBAAt(31, 31)
	g := float64(r.Gray[31*32+31])
	if math.Abs(float64(cold.G)-g*0.85) > 20 {
		t.Errorf("cold pixel %v, gray %g", cold, g)
	}
	if _, err := Overlay(score.Result{Size: 4}, 0, 1); err == nil {
		t.Error("Overlay without a map succeeded")
	}
}

func TestRecordPHI(t *testing.T) {
	id := pixels.Identity{PatientName: "Doe^Jane", PatientBirthDate: "19700101", PatientID: "X1"}
	r := score.Result{Item: read.Item{URI: "u.dcm", Index: 3, IndexKind: "frame", Label: -1,
		Meta: map[string]string{"patient": "P7", "Patient Name": "Doe^Jane", "DOB": "19700101"}}, Identity: &id}
	for _, phi := range []bool{false, true} {
		b, _ := json.Marshal(NewRecord(r, "", phi))
		s := string(b)
		if has := strings.Contains(s, "Doe") || strings.Contains(s, "19700101"); has != phi {
			t.Errorf("includePHI=%v: record %s", phi, s)
		}
		if !strings.Contains(s, `"patient":"P7"`) || !strings.Contains(s, `"frame":3`) || strings.Contains(s, `"label"`) {
			t.Errorf("record %s lacks the pseudonymous patient column or frame, or has a label", s)
		}
	}
}

func TestHeatmapName(t *testing.T) {
	a := HeatmapName(read.Item{URI: "gs://b/x/IM 0001.dcm", Index: -1})
	b := HeatmapName(read.Item{URI: "gs://b/y/IM 0001.dcm", Index: -1})
	c := HeatmapName(read.Item{URI: "gs://b/x/IM 0001.dcm", Index: 2})
	if a == b || a == c || !strings.HasPrefix(a, "heatmaps/IM_0001_") || !strings.HasSuffix(a, ".png") || strings.ContainsAny(a, " ") {
		t.Errorf("heatmap names %q %q %q", a, b, c)
	}
}

func TestCommitLocal(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	out := filepath.Join(root, "out")
	stage := filepath.Join(out, ".tmp-1")
	files := map[string]string{
		filepath.Join(out, "summary.json"):        "old",
		filepath.Join(out, "heatmaps", "old.png"): "old",
		filepath.Join(out, "keep.txt"):            "user file",
		filepath.Join(stage, "summary.json"):      "new",
		filepath.Join(stage, "scores.jsonl"):      "new",
		filepath.Join(stage, "heatmaps", "a.png"): "new",
		filepath.Join(stage, digestFile):          "digest",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Commit(ctx, stage, out); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"summary.json": "new", "scores.jsonl": "new", "heatmaps/a.png": "new", "keep.txt": "user file"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"heatmaps/old.png", digestFile, ".tmp-1"} {
		if _, err := os.Stat(filepath.Join(out, p)); err == nil {
			t.Errorf("%s survived the commit", p)
		}
	}
	// A stage without a summary is refused.
	if err := os.MkdirAll(stage, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "scores.jsonl"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Commit(ctx, stage, out); err == nil {
		t.Error("committed a stage without summary.json")
	}
}

// TestHTMLInChromium renders report.html with headless Chromium and checks
// that the screenshot shows a real page: high pixel variance and many
// colours (curves, histogram, heatmaps).
func TestHTMLInChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		testenv.Missing(t, "headless Chromium is needed to check report.html: %s missing (Debian package chromium): %v", chromium, err)
	}
	c := goldenCases(t)[4]
	d := &Digest{Inputs: len(c.Labels), Scored: len(c.Labels), Points: points(c)}
	for i := 0; i < 4; i++ {
		r := testResult("tile.png", 64, 0.9-0.1*float64(i))
		p, err := HeatmapPNG(r, bundle.Scores{PixelMin: 0, PixelMax: 1, PixelThreshold: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		d.Gallery = append(d.Gallery, GalleryEntry{Record: NewRecord(r, "", false), PNG: p})
	}
	auc := c.AUROC
	sum := &Summary{Input: "test", Inputs: d.Inputs, Scored: d.Scored, Threshold: 0.5, Started: time.Unix(0, 0),
		Metrics: &Metrics{Count: len(c.Labels), ImageAUROC: &auc}, ByGroup: map[string]Metrics{"crack": {Count: 3, ImageAUROC: &auc}}}
	html, err := HTML(sum, d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "polyline", "data:image/png;base64,", "threshold", "crack"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if strings.Contains(string(html), "http://") && !strings.Contains(string(html), "xmlns=\"http://www.w3.org/2000/svg\"") {
		t.Error("report.html refers to the network")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, html, 0o644); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "out.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--screenshot="+shot, "--window-size=1200,1600", "file://"+page)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	colours := map[[3]uint32]bool{}
	var sum1, sum2, n float64
	reddish := 0
	bnd := img.Bounds()
	for y := bnd.Min.Y; y < bnd.Max.Y; y += 2 {
		for x := bnd.Min.X; x < bnd.Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 11, g >> 11, b >> 11}] = true
			l := float64(r+g+b) / 3 / 65535
			sum1 += l
			sum2 += l * l
			n++
			if r>>8 > 180 && g>>8 < 120 && b>>8 < 120 {
				reddish++
			}
		}
	}
	variance := sum2/n - (sum1/n)*(sum1/n)
	t.Logf("screenshot %v: variance %.4f, %d colours, %d red pixels", bnd.Size(), variance, len(colours), reddish)
	if variance < 0.005 || len(colours) < 50 || reddish < 50 {
		t.Errorf("screenshot looks blank: variance %.4f, %d colours, %d red pixels", variance, len(colours), reddish)
	}
}
