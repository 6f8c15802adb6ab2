package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strings"

	"github.com/multiad/multiad/metrics"
)

// Curve is a plotted curve: points in [0,1]² (x, y).
type Curve [][2]float64

// curves returns metrics.ROCCurve of the labelled points as (FPR, TPR), from
// (0,0) to (1,1), and metrics.PRCurve as (recall, precision), drawn from its
// point at recall 0 (precision 1) through decreasing thresholds; nil
// without both classes. Points labelled other than 0 or 1 are unlabelled.
func curves(pts []Point) (roc, pr Curve, err error) {
	var labels []int
	var scores []float64
	var pos, neg int
	for _, p := range pts {
		if p.Label == 0 || p.Label == 1 {
			labels, scores = append(labels, p.Label), append(scores, p.Score)
			pos += p.Label
			neg += 1 - p.Label
		}
	}
	if pos == 0 || neg == 0 {
		return nil, nil, nil
	}
	rp, err := metrics.ROCCurve(labels, scores)
	if err != nil {
		return nil, nil, err
	}
	pp, err := metrics.PRCurve(labels, scores)
	if err != nil {
		return nil, nil, err
	}
	roc, pr = make(Curve, len(rp)), make(Curve, len(pp))
	for i, p := range rp {
		roc[i] = [2]float64{p.FPR, p.TPR}
	}
	for i, p := range pp {
		pr[len(pp)-1-i] = [2]float64{p.Recall, p.Precision}
	}
	return roc, pr, nil
}

// Histogram bins the scores of each label class (normal, anomalous,
// unlabelled) into n equal bins over [lo, hi].
type Histogram struct {
	Lo, Hi float64
	Counts [3][]int // by class: 0 normal, 1 anomalous, 2 unknown
}

// NewHistogram bins pts into n bins over their range (widened to include
// extra, e.g. the threshold).
func NewHistogram(pts []Point, n int, extra float64) Histogram {
	h := Histogram{Lo: extra, Hi: extra}
	for _, p := range pts {
		if !math.IsNaN(p.Score) && !math.IsInf(p.Score, 0) {
			h.Lo, h.Hi = math.Min(h.Lo, p.Score), math.Max(h.Hi, p.Score)
		}
	}
	if h.Hi <= h.Lo {
		h.Hi = h.Lo + 1
	}
	for k := range h.Counts {
		h.Counts[k] = make([]int, n)
	}
	for _, p := range pts {
		if math.IsNaN(p.Score) || math.IsInf(p.Score, 0) {
			continue
		}
		b := int((p.Score - h.Lo) / (h.Hi - h.Lo) * float64(n))
		b = max(0, min(b, n-1))
		k := 2
		if p.Label == 0 || p.Label == 1 {
			k = p.Label
		}
		h.Counts[k][b]++
	}
	return h
}

var classColors = [3]string{"#3b7dd8", "#d8453b", "#8c8c8c"}

// curveSVG draws a curve in a unit square with axes; in place of an empty
// curve, it says what it needs or, when err is not nil, why it is missing.
func curveSVG(title, xl, yl string, c Curve, err error, diagonal bool) template.HTML {
	const w, h, m = 320.0, 280.0, 40.0
	pw, ph := w-m-10, h-m-25
	X := func(x float64) float64 { return m + x*pw }
	Y := func(y float64) float64 { return 25 + (1-y)*ph }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g">`, w, h, w, h)
	fmt.Fprintf(&b, `<rect x="%g" y="25" width="%g" height="%g" fill="#fff" stroke="#444"/>`, m, pw, ph)
	for _, t := range []float64{0, 0.25, 0.5, 0.75, 1} {
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/>`, X(t), Y(0), X(t), Y(1))
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#ddd"/>`, X(0), Y(t), X(1), Y(t))
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" text-anchor="middle">%g</text>`, X(t), Y(0)+12, t)
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" text-anchor="end">%g</text>`, X(0)-3, Y(t)+3, t)
	}
	fmt.Fprintf(&b, `<text x="%g" y="15" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`, w/2, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="11" text-anchor="middle">%s</text>`, m+pw/2, h-3, template.HTMLEscapeString(xl))
	fmt.Fprintf(&b, `<text x="12" y="%g" font-size="11" text-anchor="middle" transform="rotate(-90 12 %g)">%s</text>`, 25+ph/2, 25+ph/2, template.HTMLEscapeString(yl))
	if diagonal {
		fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" stroke="#999" stroke-dasharray="4 3"/>`, X(0), Y(0), X(1), Y(1))
	}
	switch {
	case err != nil:
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="12" text-anchor="middle" fill="#888">%s</text>`, m+pw/2, 25+ph/2, template.HTMLEscapeString(err.Error()))
	case len(c) == 0:
		fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="12" text-anchor="middle" fill="#888">needs labelled normal and anomalous images</text>`, m+pw/2, 25+ph/2)
	default:
		b.WriteString(`<polyline fill="none" stroke="#d8453b" stroke-width="2" points="`)
		for _, p := range c {
			fmt.Fprintf(&b, "%.2f,%.2f ", X(p[0]), Y(p[1]))
		}
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// histogramSVG draws the score histogram with the threshold as a line.
func histogramSVG(hist Histogram, threshold float64) template.HTML {
	const w, h, m = 660.0, 280.0, 40.0
	pw, ph := w-m-10, h-m-25
	n := len(hist.Counts[0])
	top := 1
	for k := range hist.Counts {
		for _, c := range hist.Counts[k] {
			top = max(top, c)
		}
	}
	X := func(v float64) float64 { return m + (v-hist.Lo)/(hist.Hi-hist.Lo)*pw }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%g" y="15" font-size="13" font-weight="bold" text-anchor="middle">Image scores</text>`, w/2)
	fmt.Fprintf(&b, `<rect x="%g" y="25" width="%g" height="%g" fill="#fff" stroke="#444"/>`, m, pw, ph)
	bw := pw / float64(n)
	for k, counts := range hist.Counts {
		for i, c := range counts {
			if c == 0 {
				continue
			}
			bh := float64(c) / float64(top) * ph
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s" fill-opacity="0.55"/>`,
				m+float64(i)*bw+1, 25+ph-bh, bw-2, bh, classColors[k])
		}
	}
	tx := X(threshold)
	fmt.Fprintf(&b, `<line x1="%.2f" y1="25" x2="%.2f" y2="%.2f" stroke="#000" stroke-width="2" stroke-dasharray="6 3"/>`, tx, tx, 25+ph)
	anchor, lx := "start", tx+4
	if tx > m+pw/2 {
		anchor, lx = "end", tx-4
	}
	fmt.Fprintf(&b, `<text x="%.2f" y="%g" font-size="11" text-anchor="%s">threshold %.4g</text>`, lx, 25+ph-6, anchor, threshold)
	for i := 0; i <= 4; i++ {
		v := hist.Lo + float64(i)/4*(hist.Hi-hist.Lo)
		fmt.Fprintf(&b, `<text x="%.2f" y="%g" font-size="10" text-anchor="middle">%.3g</text>`, X(v), 25+ph+12, v)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" text-anchor="end">%d</text>`, m-3, 29.0, top)
	for k, name := range []string{"normal", "anomalous", "unlabelled"} {
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="10" height="10" fill="%s" fill-opacity="0.55"/><text x="%g" y="%g" font-size="11">%s</text>`,
			m+pw-190, 30.0+float64(k)*14, classColors[k], m+pw-176, 39.0+float64(k)*14, name)
	}
	// Where normal and anomalous bars overlap, the anomalous bar is drawn
	// over the normal one: the legend shows that mix.
	fmt.Fprintf(&b, `<rect x="%g" y="%g" width="10" height="10" fill="%s" fill-opacity="0.55"/><rect x="%g" y="%g" width="10" height="10" fill="%s" fill-opacity="0.55"/><text x="%g" y="%g" font-size="11">overlap (normal and anomalous)</text>`,
		m+pw-190, 30.0+3*14, classColors[0], m+pw-190, 30.0+3*14, classColors[1], m+pw-176, 39.0+3*14)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

type htmlRow struct{ Name, Value string }

type htmlGroup struct {
	Name string
	M    Metrics
}

// htmlStudies is the study table: rows sorted by score, at most
// MaxStudyRows of them.
type htmlStudies struct {
	Summary StudySummary
	Rows    []StudyRow
	More    int
}

type htmlTile struct {
	Src, Image template.URL
	Caption    string
	Score      string
	Normalized string
	Anomalous  bool
	Label      string
	Truth      bool
	Size       string
}

type htmlFailure struct{ URI, Error string }

// colorBarSVG draws the heatmaps' colour scale: Viridis over the
// normalised pixel score, with the pixel threshold at 0.5.
func colorBarSVG() template.HTML {
	const w, h, m = 420.0, 58.0, 20.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" class="colorbar">`, w, h, w, h)
	b.WriteString(`<defs><linearGradient id="viridis" x1="0" x2="1" y1="0" y2="0">`)
	for i := 0; i <= 16; i++ {
		t := float64(i) / 16
		c := Viridis(t)
		fmt.Fprintf(&b, `<stop offset="%.4f" stop-color="#%02x%02x%02x"/>`, t, c.R, c.G, c.B)
	}
	b.WriteString(`</linearGradient></defs>`)
	fmt.Fprintf(&b, `<rect x="%g" y="4" width="%g" height="16" fill="url(#viridis)" stroke="#444"/>`, m, w-2*m)
	for _, t := range []struct {
		v     float64
		label string
	}{{0, "0 normal"}, {0.5, "0.5 pixel threshold"}, {1, "1"}} {
		x := m + t.v*(w-2*m)
		anchor := "middle"
		if t.v == 0 {
			anchor = "start"
		} else if t.v == 1 {
			anchor = "end"
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="4" x2="%.1f" y2="24" stroke="#000"/><text x="%.1f" y="36" font-size="11" text-anchor="%s">%s</text>`, x, x, x, anchor, t.label)
	}
	fmt.Fprintf(&b, `<text x="%g" y="52" font-size="11" text-anchor="middle" fill="#444">normalised pixel score (same scale in every heatmap of this model)</text>`, w/2)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"f": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.4f", *p)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>multiad report</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;background:#f6f7f9}
h1{font-size:22px;margin:0 0 12px} h2{font-size:17px;margin:24px 0 8px}
table{border-collapse:collapse;background:#fff} td,th{border:1px solid #ccc;padding:4px 10px;font-size:13px;text-align:left}
th{background:#e8ebf0} .num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:16px} .plots svg{background:#fff;border:1px solid #ccc}
.gallery{display:flex;flex-wrap:wrap;gap:12px} .tile{background:#fff;border:1px solid #ccc;padding:6px;width:200px;font-size:12px;word-break:break-all}
.tile{width:392px} .pics{display:flex;gap:4px;align-items:flex-start} .pics figure{margin:0;width:194px}
.pics img{width:194px;height:auto;max-height:260px;object-fit:contain;display:block;background:#000} .pics figcaption{font-size:11px;color:#555}
.anom{color:#b3261e;font-weight:bold}
.note{background:#eef4ff;border:1px solid #9bb6e0;padding:8px 12px;max-width:900px;font-size:13px}
.warn{background:#fff4e5;border:1px solid #e0a04b;padding:8px 12px;max-width:900px;font-size:13px;margin:6px 0}
.fail td{font-size:12px;word-break:break-all}
</style></head><body>
<h1>multiad anomaly report</h1>
{{range .Warnings}}<div class="warn"><b>Warning:</b> {{.}}</div>{{end}}
<h2>Summary</h2>
<table>{{range .Rows}}<tr><th>{{.Name}}</th><td class="num">{{.Value}}</td></tr>{{end}}</table>
{{range .Notes}}<h2>Metrics</h2><div class="note">{{.}}</div>{{end}}
{{if .Groups}}<h2>Metrics</h2>
<table><tr><th>group</th><th>images</th><th>anomalous</th><th>image AUROC</th><th>image AP</th><th>image F1 max</th><th>pixel AUROC</th><th>AUPRO</th></tr>
{{range .Groups}}<tr><td>{{.Name}}</td><td class="num">{{.M.Count}}</td><td class="num">{{.M.Positives}}</td><td class="num">{{f .M.ImageAUROC}}</td><td class="num">{{f .M.ImageAP}}</td><td class="num">{{f .M.ImageF1Max}}</td><td class="num">{{f .M.PixelAUROC}}</td><td class="num">{{f .M.AUPRO}}</td></tr>
{{end}}</table>{{end}}
{{with .Studies}}<h2>Studies and series</h2>
<p>Score: {{.Summary.Score}} over slices · {{.Summary.Studies}} studies ({{.Summary.Flagged}} flagged), {{.Summary.Series}} series ({{.Summary.FlaggedSeries}} flagged){{with .Summary.Metrics}} · study AUROC {{f .ImageAUROC}}{{end}}{{with .Summary.SeriesMetrics}} · series AUROC {{f .ImageAUROC}}{{end}}{{range .Summary.Notes}}<br>{{.}}{{end}}</p>
<table><tr><th>level</th><th>study</th><th>series</th><th>score</th><th>verdict</th><th>label</th><th>slices</th><th>top slices</th></tr>
{{range .Rows}}<tr><td>{{.Level}}</td><td>{{.Study}}</td><td>{{.Series}}</td><td class="num">{{printf "%.4f" .Score}}</td><td>{{if .Anomalous}}<span class="anom">anomalous</span>{{else}}normal{{end}}</td><td>{{with .Label}}{{.}}{{end}}</td><td class="num">{{.Slices}}</td>
<td>{{range .Top}}<div>{{if .Heatmap}}<a href="{{.Heatmap}}">{{.URI}}{{with .Slice}} [slice {{.}}]{{end}}{{with .Frame}} [frame {{.}}]{{end}}</a>{{else}}{{.URI}}{{with .Slice}} [slice {{.}}]{{end}}{{with .Frame}} [frame {{.}}]{{end}}{{end}} {{printf "%.4f" .Score}}</div>{{end}}</td></tr>
{{end}}</table>{{if .More}}<p>{{.More}} more rows in studies.jsonl.</p>{{end}}{{end}}
<h2>Curves</h2>
<div class="plots">{{.ROC}}{{.PR}}</div>
<h2>Score distribution</h2>
<div class="plots">{{.Hist}}</div>
<h2>Top-scoring images</h2>
<p>Each card shows the image and its heatmap at the image's own aspect; the heatmap colours the normalised pixel score{{if .AnyTruth}}, and a <span style="color:#ff2828;font-weight:bold">red outline</span> marks the ground-truth defect where a mask exists{{end}}.</p>
{{.ColorBar}}
<div class="gallery">{{range .Tiles}}<div class="tile">{{if .Src}}<div class="pics"><figure><img src="{{.Image}}" alt="image"><figcaption>image {{.Size}}</figcaption></figure><figure><img src="{{.Src}}" alt="heatmap"><figcaption>heatmap{{if .Truth}} · ground truth outlined{{end}}</figcaption></figure></div>{{end}}
<div>{{.Caption}}</div><div>score <b>{{.Score}}</b> · normalised <b>{{.Normalized}}</b>{{if .Anomalous}} <span class="anom">anomalous</span>{{end}}{{if .Label}} · label {{.Label}}{{end}}</div></div>
{{else}}<p>No images were scored.</p>{{end}}</div>
{{if .Failures}}<h2>Failed inputs ({{.FailedCount}})</h2>
<table class="fail"><tr><th>input</th><th>reason</th></tr>{{range .Failures}}<tr><td>{{.URI}}</td><td>{{.Error}}</td></tr>{{end}}</table>
{{if .MoreFailures}}<p>… and {{.MoreFailures}} more in failures.jsonl.</p>{{end}}{{end}}
</body></html>
`))

// HTML renders report.html: summary table, metrics by group, ROC and PR
// curves, score histogram with the threshold, and the gallery, all inline.
func HTML(sum *Summary, d *Digest) ([]byte, error) {
	data := struct {
		Rows          []htmlRow
		Groups        []htmlGroup
		ROC, PR, Hist template.HTML
		Tiles         []htmlTile
		Studies       *htmlStudies
		Notes         []string
		Warnings      []string
		ColorBar      template.HTML
		AnyTruth      bool
		Failures      []htmlFailure
		FailedCount   int
		MoreFailures  int
	}{Notes: sum.Notes, Warnings: sum.Warnings, ColorBar: colorBarSVG(), FailedCount: sum.Failed}
	for _, f := range d.Failures {
		uri := f.URI
		if f.Slice != nil {
			uri += fmt.Sprintf(" [%d]", *f.Slice)
		}
		data.Failures = append(data.Failures, htmlFailure{uri, f.Error})
	}
	data.MoreFailures = max(0, sum.Failed-len(data.Failures))
	// Studies of one image each (plain pictures) would only repeat the
	// gallery: the table is for series and volumes.
	if st := d.Studies; st != nil && st.MultiSlice {
		rows := st.Rows[:min(len(st.Rows), MaxStudyRows)]
		data.Studies = &htmlStudies{Summary: st.Summary, Rows: rows, More: max(st.Total, len(st.Rows)) - len(rows)}
	}
	add := func(n, v string) { data.Rows = append(data.Rows, htmlRow{n, v}) }
	add("input", sum.Input)
	add("inputs", fmt.Sprint(sum.Inputs))
	add("scored", fmt.Sprint(sum.Scored))
	add("failed", fmt.Sprint(sum.Failed))
	add("flagged", fmt.Sprint(sum.Flagged))
	add("threshold", fmt.Sprintf("%.6g", sum.Threshold))
	if v, ok := sum.Model["uri"]; ok {
		add("model", fmt.Sprint(v))
	}
	add("started", sum.Started.Format("2006-01-02 15:04:05 MST"))
	add("time", fmt.Sprintf("%.1f s (%.1f images/s)", sum.Throughput.Seconds, sum.Throughput.ImagesPerSecond))
	if sum.Metrics != nil {
		data.Groups = append(data.Groups, htmlGroup{"all", *sum.Metrics})
		names := make([]string, 0, len(sum.ByGroup))
		for g := range sum.ByGroup {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			data.Groups = append(data.Groups, htmlGroup{g, sum.ByGroup[g]})
		}
	}
	roc, pr, err := curves(d.Points)
	data.ROC = curveSVG("ROC", "false positive rate", "true positive rate", roc, err, true)
	data.PR = curveSVG("Precision–recall", "recall", "precision", pr, err, false)
	data.Hist = histogramSVG(NewHistogram(d.Points, 30, sum.Threshold), sum.Threshold)
	for _, g := range d.Gallery {
		t := htmlTile{Caption: g.Record.URI, Score: fmt.Sprintf("%.4f", g.Record.Score), Anomalous: g.Record.Anomalous,
			Normalized: fmt.Sprintf("%.3f", g.Record.NormalizedScore), Truth: g.Truth}
		if g.Cols > 0 {
			t.Size = fmt.Sprintf("%d×%d", g.Cols, g.Rows)
		}
		data.AnyTruth = data.AnyTruth || g.Truth
		if g.Record.Slice != nil {
			t.Caption += fmt.Sprintf(" [slice %d]", *g.Record.Slice)
		} else if g.Record.Frame != nil {
			t.Caption += fmt.Sprintf(" [frame %d]", *g.Record.Frame)
		}
		if g.Record.Label != nil {
			t.Label = fmt.Sprint(*g.Record.Label)
		}
		if len(g.PNG) > 0 {
			t.Src = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(g.PNG))
			t.Image = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(g.Image))
		}
		data.Tiles = append(data.Tiles, t)
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("report: rendering HTML: %w", err)
	}
	return buf.Bytes(), nil
}
