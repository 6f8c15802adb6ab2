package metrics

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/multiad/multiad/internal/testenv"
)

// runPython runs script, which imports the Python modules mods, with the
// JSON encoding of in as its first argument (a file) and decodes its
// standard output into out.
func runPython(t *testing.T, script string, in, out any, mods ...string) {
	t.Helper()
	py := testenv.Python(t, mods...)
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", script, f)
	cmd.Stderr = os.Stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("python reference: %v", err)
	}
	if err := json.Unmarshal(res, out); err != nil {
		t.Fatalf("python reference output: %v", err)
	}
}

const sklearnBinaryScript = `
import json, sys, warnings
import numpy as np
from sklearn.metrics import roc_auc_score, average_precision_score, precision_recall_curve, roc_curve
warnings.simplefilter("ignore")
out = []
for c in json.load(open(sys.argv[1])):
    y, s = np.array(c["labels"]), np.array(c["scores"])
    p, r, t = precision_recall_curve(y, s)
    f1 = np.where(p[:-1] + r[:-1] > 0, 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-300), 0.0)
    i = int(np.argmax(f1))
    fpr, tpr, rt = roc_curve(y, s, drop_intermediate=False)
    out.append(dict(auroc=roc_auc_score(y, s), ap=average_precision_score(y, s),
        f1=float(f1[i]), f1threshold=float(t[i]),
        precision=p.tolist(), recall=r.tolist(), prthresholds=t.tolist(),
        fpr=fpr.tolist(), tpr=tpr.tolist(), rocthresholds=rt[1:].tolist()))
print(json.dumps(out))
`

type binaryCase struct {
	Labels []int     `json:"labels"`
	Scores []float64 `json:"scores"`
}

// randomBinaryCase draws n samples with both classes; quant > 0 rounds
// scores to multiples of 1/quant to create ties.
func randomBinaryCase(r *rand.Rand, n int, quant float64) binaryCase {
	var c binaryCase
	for i := range n {
		l := r.IntN(2)
		if i == 0 {
			l = 0
		} else if i == 1 {
			l = 1
		}
		s := r.NormFloat64() + float64(l)*r.Float64()*2
		if quant > 0 {
			s = math.Round(s*quant) / quant
		}
		c.Labels = append(c.Labels, l)
		c.Scores = append(c.Scores, s)
	}
	return c
}

func TestBinaryAgainstSklearn(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var cases []binaryCase
	for _, n := range []int{2, 3, 7, 40, 300, 2000} {
		for _, q := range []float64{0, 1, 10, 1000} {
			cases = append(cases, randomBinaryCase(r, n, q))
		}
	}
	var want []struct {
		AUROC, AP, F1, F1Threshold      float64
		Precision, Recall, PRThresholds []float64
		FPR, TPR, ROCThresholds         []float64
	}
	runPython(t, sklearnBinaryScript, cases, &want, "sklearn", "numpy")
	if len(want) != len(cases) {
		t.Fatalf("python returned %d results for %d cases", len(want), len(cases))
	}
	for i, c := range cases {
		w := want[i]
		auc, err := AUROC(c.Labels, c.Scores)
		if err != nil || !near(auc, w.AUROC, 1e-9) {
			t.Errorf("case %d (n=%d): AUROC = %v, %v; sklearn %v", i, len(c.Labels), auc, err, w.AUROC)
		}
		ap, err := AveragePrecision(c.Labels, c.Scores)
		if err != nil || !near(ap, w.AP, 1e-9) {
			t.Errorf("case %d (n=%d): AveragePrecision = %v, %v; sklearn %v", i, len(c.Labels), ap, err, w.AP)
		}
		f1, thr, err := F1Max(c.Labels, c.Scores)
		if err != nil || !near(f1, w.F1, 1e-9) || thr != w.F1Threshold {
			t.Errorf("case %d (n=%d): F1Max = %v at %v, %v; sklearn %v at %v", i, len(c.Labels), f1, thr, err, w.F1, w.F1Threshold)
		}
		pr, err := PRCurve(c.Labels, c.Scores)
		if err != nil || len(pr) != len(w.Precision) {
			t.Fatalf("case %d: PRCurve has %d points, %v; sklearn %d", i, len(pr), err, len(w.Precision))
		}
		for k, p := range pr {
			if !near(p.Precision, w.Precision[k], 1e-12) || !near(p.Recall, w.Recall[k], 1e-12) ||
				(k < len(w.PRThresholds) && p.Threshold != w.PRThresholds[k]) {
				t.Errorf("case %d: PR point %d = %+v; sklearn %v %v", i, k, p, w.Precision[k], w.Recall[k])
				break
			}
		}
		roc, err := ROCCurve(c.Labels, c.Scores)
		if err != nil || len(roc) != len(w.FPR) {
			t.Fatalf("case %d: ROCCurve has %d points, %v; sklearn %d", i, len(roc), err, len(w.FPR))
		}
		for k, p := range roc {
			if !near(p.FPR, w.FPR[k], 1e-12) || !near(p.TPR, w.TPR[k], 1e-12) ||
				(k > 0 && p.Threshold != w.ROCThresholds[k-1]) {
				t.Errorf("case %d: ROC point %d = %+v; sklearn %v %v", i, k, p, w.FPR[k], w.TPR[k])
				break
			}
		}
	}
}

// pixelScript is an independent numpy/scikit-image implementation of the
// MVTec AU-PRO definition in shared/README.md, plus sklearn's pixel AUROC.
const pixelScript = `
import base64, json, sys
import numpy as np
from skimage.measure import label
from sklearn.metrics import roc_auc_score
out = []
for c in json.load(open(sys.argv[1])):
    masks = [np.frombuffer(base64.b64decode(m["Mask"]), dtype=np.uint8).reshape(m["Rows"], m["Cols"]) for m in c]
    maps = [np.array(m["Scores"], dtype=np.float32).reshape(m["Rows"], m["Cols"]) for m in c]
    normal = np.sort(np.concatenate([s[k == 0] for s, k in zip(maps, masks)]))
    regions = []
    for s, k in zip(maps, masks):
        lab = label(k != 0, connectivity=2)
        regions += [s[lab == i] for i in range(1, lab.max() + 1)]
    pts = []
    for idx in np.linspace(0, len(normal) - 1, 100).astype(int):
        th = normal[idx]
        pts.append(((normal > th).mean(), np.mean([(r > th).mean() for r in regions])))
    pts = sorted(pts + [(0.0, 0.0), (1.0, 1.0)])
    f = np.array([p[0] for p in pts]); p = np.array([p[1] for p in pts])
    lim = 0.3
    i = np.searchsorted(f, lim)
    pl = p[i - 1] + (p[i] - p[i - 1]) * (lim - f[i - 1]) / (f[i] - f[i - 1])
    ff = np.r_[f[:i], lim]; pp = np.r_[p[:i], pl]
    area = np.sum((ff[1:] - ff[:-1]) * (pp[1:] + pp[:-1]) / 2) / lim
    y = np.concatenate([k.ravel() != 0 for k in masks]); s = np.concatenate([m.ravel() for m in maps])
    out.append(dict(aupro=float(area), auroc=float(roc_auc_score(y, s.astype(np.float64)))))
print(json.dumps(out))
`

// randomMaps draws count maps of rows x cols with a few rectangular and
// diagonal blobs (touching only at corners, to test 8-connectivity) and
// scores raised inside them, rounded to 1/quant to create ties.
func randomMaps(r *rand.Rand, count, rows, cols int, quant float64) []Map {
	maps := make([]Map, count)
	for i := range maps {
		m := Map{Rows: rows, Cols: cols, Scores: make([]float32, rows*cols), Mask: make([]uint8, rows*cols)}
		for range r.IntN(4) {
			r0, c0 := r.IntN(rows), r.IntN(cols)
			h, w := 1+r.IntN(rows/3), 1+r.IntN(cols/3)
			diag := r.IntN(2) == 0
			for y := r0; y < min(rows, r0+h); y++ {
				for x := c0; x < min(cols, c0+w); x++ {
					if !diag || (y-r0) == (x-c0) {
						m.Mask[y*cols+x] = 1
					}
				}
			}
		}
		for j := range m.Scores {
			s := r.NormFloat64()*0.5 + 1 + float64(m.Mask[j])*r.Float64()*1.5
			m.Scores[j] = float32(math.Round(s*quant) / quant)
		}
		maps[i] = m
	}
	return maps
}

func TestPixelAgainstPython(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var cases [][]Map
	for _, q := range []float64{10, 100, 1e4} {
		for _, size := range [][3]int{{3, 9, 11}, {8, 24, 20}} {
			maps := randomMaps(r, size[0], size[1], size[2], q)
			maps[0].Mask[0], maps[0].Mask[1] = 1, 0 // ensure a region
			cases = append(cases, maps)
		}
	}
	var want []struct{ AUPRO, AUROC float64 }
	runPython(t, pixelScript, cases, &want, "sklearn", "skimage", "numpy")
	for i, maps := range cases {
		pro, err := AUPRO(maps, PROLimit)
		if err != nil || !near(pro, want[i].AUPRO, 1e-9) {
			t.Errorf("case %d: AUPRO = %v, %v; python %v", i, pro, err, want[i].AUPRO)
		}
		auc, err := PixelAUROC(maps)
		if err != nil || !near(auc, want[i].AUROC, 1e-9) {
			t.Errorf("case %d: PixelAUROC = %v, %v; sklearn %v", i, auc, err, want[i].AUROC)
		}
		hauc, hpro, _ := histogramMetrics(t, maps, 23, PROLimit, 2)
		if !near(hauc, auc, 1e-12) || !near(hpro, pro, 1e-12) {
			t.Errorf("case %d: 23-bit histogram AUROC %v AU-PRO %v, exact %v %v", i, hauc, hpro, auc, pro)
		}
	}
}
