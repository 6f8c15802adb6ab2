package scoring

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
	"github.com/multiad/multiad/model/inference/inferencetest"
	"github.com/multiad/multiad/transforms/report"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// testBundle writes the runtime's tiny test bundle once per test binary.
func testBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := inferencetest.WriteBundle(dir, 32); err != nil {
		t.Fatalf("inferencetest.WriteBundle: %v", err)
	}
	return dir
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, b)
}

func writeFile(t *testing.T, dst string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hugePNG is a valid PNG signature and IHDR claiming 100000×100000 RGBA.
func hugePNG() []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], 100000)
	binary.BigEndian.PutUint32(ihdr[4:], 100000)
	ihdr[8], ihdr[9] = 8, 6
	b = binary.BigEndian.AppendUint32(b, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b = append(b, chunk...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(chunk))
}

// badFiles are the undecodable inputs mixed into the test set, by path
// relative to the MVTec root.
func badFiles(t *testing.T, goodJPEG string) map[string][]byte {
	jpg, err := os.ReadFile(goodJPEG)
	if err != nil {
		t.Fatal(err)
	}
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)
	return map[string][]byte{
		"test/good/empty.jpg":      {},
		"test/crack/truncated.jpg": jpg[:len(jpg)/3],
		"test/good/random.png":     random,
		"test/good/notes.txt":      []byte("not an image\n"),
		"test/blowhole/huge.png":   hugePNG(),
	}
}

// mvtecSubset copies nGood good and nDefect images of two defect types
// (with masks) from the shared magnetic tiles into dir, plus bad files. It
// returns the relative paths of all test inputs.
func mvtecSubset(t *testing.T, dir string, nGood, nDefect int) []string {
	t.Helper()
	src := shared.MustPath(t, "data", "industrial", "magnetic_tile")
	var inputs []string
	take := func(cat string, n int) {
		names, err := filepath.Glob(filepath.Join(src, "test", cat, "*.jpg"))
		if err != nil || len(names) < n {
			t.Fatalf("magnetic tiles: %d images in %s: %v", len(names), cat, err)
		}
		sort.Strings(names)
		for _, p := range names[:n] {
			rel := filepath.Join("test", cat, filepath.Base(p))
			copyFile(t, p, filepath.Join(dir, rel))
			inputs = append(inputs, rel)
			if cat != "good" {
				m := strings.TrimSuffix(filepath.Base(p), ".jpg") + "_mask.png"
				copyFile(t, filepath.Join(src, "ground_truth", cat, m), filepath.Join(dir, "ground_truth", cat, m))
			}
		}
	}
	take("good", nGood)
	take("crack", nDefect/2)
	take("blowhole", nDefect-nDefect/2)
	for rel, b := range badFiles(t, filepath.Join(dir, inputs[0])) {
		writeFile(t, filepath.Join(dir, rel), b)
		inputs = append(inputs, rel)
	}
	sort.Strings(inputs)
	return inputs
}

type scoreLine struct {
	URI       string            `json:"uri"`
	Slice     *int              `json:"slice"`
	Score     float64           `json:"score"`
	Anomalous bool              `json:"anomalous"`
	Label     *int              `json:"label"`
	Group     string            `json:"group"`
	Meta      map[string]string `json:"meta"`
	Heatmap   string            `json:"heatmap"`
	Study     string            `json:"study"`
	Series    string            `json:"series"`
}

type failLine struct {
	URI   string `json:"uri"`
	Slice *int   `json:"slice"`
	Error string `json:"error"`
}

func readJSONL[T any](t *testing.T, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v: %s", path, err, sc.Text())
		}
		out = append(out, v)
	}
	return out
}

func readSummary(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// sklearnAUROC computes roc_auc_score with scikit-learn (Debian python3).
func sklearnAUROC(t *testing.T, labels []int, scores []float64) float64 {
	t.Helper()
	py := testenv.Python(t, "sklearn")
	in, _ := json.Marshal(map[string]any{"labels": labels, "scores": scores})
	cmd := exec.Command(py, "-c", `import json,sys
from sklearn.metrics import roc_auc_score
d=json.load(sys.stdin)
print(repr(float(roc_auc_score(d["labels"], d["scores"]))))`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scikit-learn (%s): %v\n%s", py, err, out)
	}
	var v float64
	if err := json.Unmarshal(bytes.TrimSpace(out), &v); err != nil {
		t.Fatalf("scikit-learn output %q: %v", out, err)
	}
	return v
}

func TestEndToEndMVTecWithBadFiles(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "tiles")
	inputs := mvtecSubset(t, data, 6, 6)
	out := filepath.Join(root, "out")
	// An earlier run's leftovers must be replaced.
	writeFile(t, filepath.Join(out, report.HeatmapDir, "stale.png"), []byte("old"))
	writeFile(t, filepath.Join(out, report.SummaryFile), []byte(`{"stale":true}`))

	opt := Options{Model: testBundle(t), Input: data, Output: out, BatchSize: 4, Heatmaps: report.HeatmapsAll, MaxFailures: "5"}
	// Without Overwrite, a folder holding an earlier run is refused
	// before anything is written.
	if _, err := Run(context.Background(), opt); !errors.Is(err, ErrEarlierRun) {
		t.Fatalf("Run into a folder holding summary.json without Overwrite: err = %v, want ErrEarlierRun", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, report.SummaryFile)); err != nil || string(b) != `{"stale":true}` {
		t.Fatalf("the refused run changed summary.json: %q, %v", b, err)
	}
	opt.Overwrite = true
	sum, err := Run(context.Background(), opt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	scores := readJSONL[scoreLine](t, filepath.Join(out, report.ScoresFile))
	fails := readJSONL[failLine](t, filepath.Join(out, report.FailuresFile))

	// Every input appears exactly once in scores.jsonl or failures.jsonl.
	seen := map[string]string{}
	for _, s := range scores {
		seen[s.URI] += "s"
	}
	for _, f := range fails {
		seen[f.URI] += "f"
		if f.Error == "" {
			t.Errorf("failure of %s has no error", f.URI)
		}
	}
	for _, rel := range inputs {
		uri := filepath.Join(data, rel)
		if got := seen[uri]; got != "s" && got != "f" {
			t.Errorf("%s: appears %q times (s: scores, f: failures), want once", rel, got)
		}
		delete(seen, uri)
	}
	for uri := range seen {
		t.Errorf("unexpected output for %s", uri)
	}
	if len(scores) != 12 || len(fails) != 5 {
		t.Errorf("%d scored, %d failed; want 12 and 5", len(scores), len(fails))
	}
	if sum.Inputs != len(inputs) || sum.Scored != len(scores) || sum.Failed != len(fails) {
		t.Errorf("summary counts inputs %d scored %d failed %d; files say %d, %d, %d",
			sum.Inputs, sum.Scored, sum.Failed, len(inputs), len(scores), len(fails))
	}

	// Labels and groups follow the MVTec layout; heatmaps exist.
	var labels []int
	var vals []float64
	for _, s := range scores {
		cat := filepath.Base(filepath.Dir(s.URI))
		want := 1
		if cat == "good" {
			want = 0
		}
		if s.Label == nil || *s.Label != want {
			t.Errorf("%s: label %v, want %d", s.URI, s.Label, want)
			continue
		}
		if want == 1 && s.Group != cat {
			t.Errorf("%s: group %q, want %q", s.URI, s.Group, cat)
		}
		if s.Anomalous != (s.Score > 0.5) {
			t.Errorf("%s: anomalous %v with score %g and threshold 0.5", s.URI, s.Anomalous, s.Score)
		}
		if s.Heatmap == "" {
			t.Errorf("%s: no heatmap with --heatmaps all", s.URI)
		} else if st, err := os.Stat(filepath.Join(out, s.Heatmap)); err != nil || st.Size() == 0 {
			t.Errorf("%s: heatmap %s: %v", s.URI, s.Heatmap, err)
		}
		labels = append(labels, *s.Label)
		vals = append(vals, s.Score)
	}
	if _, err := os.Stat(filepath.Join(out, report.HeatmapDir, "stale.png")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale heatmap of an earlier run survived: %v", err)
	}
	if ents, _ := filepath.Glob(filepath.Join(out, ".tmp-*")); len(ents) > 0 {
		t.Errorf("staging folders left behind: %v", ents)
	}

	// Independent recomputation of the image AUROC.
	want := sklearnAUROC(t, labels, vals)
	js := readSummary(t, filepath.Join(out, report.SummaryFile))
	m, _ := js["metrics"].(map[string]any)
	got, ok := m["image_auroc"].(float64)
	if !ok {
		t.Fatalf("summary.json has no metrics.image_auroc: %v", js)
	}
	if math.Abs(got-want) > 1e-9 {
		t.Errorf("image AUROC %.12f, scikit-learn %.12f", got, want)
	}
	for _, k := range []string{"pixel_auroc", "aupro", "image_ap", "image_f1_max"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary.json metrics lack %s", k)
		}
	}
	if bg, _ := js["by_group"].(map[string]any); len(bg) != 2 {
		t.Errorf("by_group = %v, want crack and blowhole", js["by_group"])
	}
	if _, err := os.Stat(filepath.Join(out, report.ReportFile)); err != nil {
		t.Errorf("no report.html: %v", err)
	}
}

func TestMaxFailures(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "tiles")
	mvtecSubset(t, data, 2, 2)
	out := filepath.Join(root, "out")
	_, err := Run(context.Background(), Options{Model: testBundle(t), Input: data, Output: out, MaxFailures: "10%"})
	if !errors.Is(err, ErrTooManyFailures) {
		t.Fatalf("Run with 5 of 9 failing and --max-failures 10%%: err = %v, want ErrTooManyFailures", err)
	}
	// The outputs are still committed for inspection.
	if _, err := os.Stat(filepath.Join(out, report.FailuresFile)); err != nil {
		t.Errorf("failures.jsonl not committed: %v", err)
	}
}

func TestCheckFailures(t *testing.T) {
	for _, c := range []struct {
		max            string
		scored, failed int
		bad            bool
	}{
		{"", 0, 100, false},
		{"0", 10, 0, false},
		{"0", 10, 1, true},
		{"3", 10, 3, false},
		{"3", 10, 4, true},
		{"0.1", 9, 1, false},
		{"0.1", 8, 2, true},
		{"10%", 9, 1, false},
		{"10%", 8, 2, true},
	} {
		err := CheckFailures(c.max, c.scored, c.failed)
		if (err != nil) != c.bad {
			t.Errorf("CheckFailures(%q, %d, %d) = %v, want error %v", c.max, c.scored, c.failed, err, c.bad)
		}
	}
	for _, bad := range []string{"x", "-1", "1.5", "120%"} {
		if _, _, err := ParseMaxFailures(bad); err == nil {
			t.Errorf("ParseMaxFailures(%q) accepted", bad)
		}
	}
}

var (
	gcsOnce sync.Once
	gcsSrv  *fakestorage.Server
	gcsErr  error
)

// fakeGCS returns the test binary's embedded fake GCS server, started on
// first use, with STORAGE_EMULATOR_HOST pointing at it. The GCS clients of
// io/storage and transforms/report are created once per process, so every
// test that uses GCS must share one server (each with its own bucket).
func fakeGCS(t *testing.T) *fakestorage.Server {
	t.Helper()
	gcsOnce.Do(func() {
		gcsSrv, gcsErr = fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1"})
		if gcsErr == nil {
			os.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(gcsSrv.URL(), "http://"))
		}
	})
	if gcsErr != nil {
		t.Fatal(gcsErr)
	}
	return gcsSrv
}

// TestEndToEndGCS reads the images and the bundle from, and writes every
// output to, an embedded fake GCS server.
func TestEndToEndGCS(t *testing.T) {
	srv := fakeGCS(t)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "b"})
	upload := func(dir, prefix string) {
		if err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(dir, p)
			srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "b", Name: prefix + filepath.ToSlash(rel)}, Content: b})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	inputs := mvtecSubset(t, filepath.Join(root, "tiles"), 3, 2)
	upload(filepath.Join(root, "tiles"), "tiles/")
	upload(testBundle(t), "bundle/")
	srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "b", Name: "out/heatmaps/stale.png"}, Content: []byte("old")})

	sum, err := Run(context.Background(), Options{Model: "gs://b/bundle", Input: "gs://b/tiles", Output: "gs://b/out", Heatmaps: report.HeatmapsAll})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if sum.Inputs != len(inputs) || sum.Scored != 5 || sum.Failed != len(inputs)-5 {
		t.Errorf("inputs %d scored %d failed %d, want %d, 5, %d", sum.Inputs, sum.Scored, sum.Failed, len(inputs), len(inputs)-5)
	}
	list, err := srv.ListObjectsWithOptionsPaginated("b", fakestorage.ListOptions{Prefix: "out/"})
	if err != nil {
		t.Fatal(err)
	}
	objs := list.Objects
	names := map[string]bool{}
	heatmaps := 0
	for _, o := range objs {
		names[o.Name] = true
		if strings.HasPrefix(o.Name, "out/.tmp-") || o.Name == "out/heatmaps/stale.png" {
			t.Errorf("left behind: gs://b/%s", o.Name)
		}
		if strings.HasPrefix(o.Name, "out/heatmaps/") {
			heatmaps++
		}
	}
	for _, f := range []string{report.ScoresFile, report.FailuresFile, report.SummaryFile, report.ReportFile} {
		if !names["out/"+f] {
			t.Errorf("gs://b/out/%s missing; have %v", f, names)
		}
	}
	if heatmaps != 5 {
		t.Errorf("%d heatmaps on GCS, want 5", heatmaps)
	}
	o, err := srv.GetObject("b", "out/"+report.ScoresFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(o.Content), "\n"); n != 5 || !strings.Contains(string(o.Content), `"uri":"gs://b/tiles/test/`) {
		t.Errorf("scores.jsonl on GCS has %d lines:\n%s", n, o.Content)
	}
}

// dicomRows picks a few rows of lgg_dicom/test.csv: two per patient, from
// the middle of each series (covering all three transfer syntaxes).
func dicomRows(t *testing.T) (header []string, rows [][]string) {
	t.Helper()
	f, err := os.Open(shared.MustPath(t, "data", "medical", "lgg_dicom", "test.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	byPatient := map[string][][]string{}
	var order []string
	for _, r := range all[1:] {
		if byPatient[r[4]] == nil {
			order = append(order, r[4])
		}
		byPatient[r[4]] = append(byPatient[r[4]], r)
	}
	for _, p := range order {
		rs := byPatient[p]
		rows = append(rows, rs[len(rs)/2], rs[len(rs)/2+1])
	}
	return all[0], rows
}

func writeCSV(t *testing.T, path string, rows [][]string) {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b.Bytes())
}

// dicomIdentity reads patient names and birth dates with pydicom.
func dicomIdentity(t *testing.T, files []string) []string {
	t.Helper()
	in, _ := json.Marshal(files)
	cmd := exec.Command(testenv.Python(t, "pydicom"), "-c", `import json,sys,pydicom
out=set()
for f in json.load(sys.stdin):
    d=pydicom.dcmread(f, stop_before_pixels=True)
    out.add(str(d.PatientName)); out.add(str(d.PatientBirthDate))
print(json.dumps(sorted(x for x in out if x)))`)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, out)
	}
	var ids []string
	if err := json.Unmarshal(out, &ids); err != nil || len(ids) == 0 {
		t.Fatalf("pydicom gave %q: %v", out, err)
	}
	return ids
}

// grepTree returns the files under dir that contain any of needles.
func grepTree(t *testing.T, dir string, needles []string) []string {
	t.Helper()
	var hits []string
	if err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, fmt.Sprintf("%s contains %q", p, n))
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestDICOMPHIAndFLAIR scores a few slices of the DICOM series: patient
// names and birth dates stay out of every output unless IncludePHI; and
// the same slices read from the NIfTI FLAIR volumes score the same.
func TestDICOMPHIAndFLAIR(t *testing.T) {
	ddir := shared.MustPath(t, "data", "medical", "lgg_dicom")
	header, rows := dicomRows(t)
	root := t.TempDir()
	var files []string
	abs := [][]string{header}
	for _, r := range rows {
		r = append([]string(nil), r...)
		r[0], r[2] = filepath.Join(ddir, r[0]), filepath.Join(ddir, r[2])
		files = append(files, r[0])
		abs = append(abs, r)
	}
	manifest := filepath.Join(root, "dicom.csv")
	writeCSV(t, manifest, abs)
	ids := dicomIdentity(t, files)
	bundle := testBundle(t)

	out := filepath.Join(root, "out")
	sum, err := Run(context.Background(), Options{Model: bundle, Input: manifest, Output: out, Heatmaps: report.HeatmapsAll, GroupBy: "patient"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Scored != len(rows) || sum.Failed != 0 {
		t.Fatalf("scored %d, failed %d of %d DICOM slices", sum.Scored, sum.Failed, len(rows))
	}
	if hits := grepTree(t, out, ids); len(hits) > 0 {
		t.Errorf("PHI in the outputs without --include-phi:\n%s", strings.Join(hits, "\n"))
	}
	if len(sum.ByGroup) != 3 {
		t.Errorf("by_group %v, want the 3 patients", sum.ByGroup)
	}

	// --dicom-out into a folder: every flagged slice gets a Secondary
	// Capture filed under its source study; the usual outputs still carry
	// no identity.
	outSC, scDir := filepath.Join(root, "out-sc"), filepath.Join(root, "captures")
	sumSC, err := Run(context.Background(), Options{Model: bundle, Input: manifest, Output: outSC, DicomOut: scDir})
	if err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, outSC, ids); len(hits) > 0 {
		t.Errorf("PHI in the outputs with --dicom-out but without --include-phi:\n%s", strings.Join(hits, "\n"))
	}
	flagged := 0
	for _, l := range readJSONL[scoreLine](t, filepath.Join(outSC, report.ScoresFile)) {
		if l.Anomalous {
			flagged++
		}
	}
	var captures []string
	if err := filepath.Walk(scDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() && strings.HasSuffix(p, ".dcm") {
			captures = append(captures, p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if flagged == 0 || len(captures) < flagged || sumSC.Scored != len(rows) {
		t.Errorf("%d flagged slices, %d captures written", flagged, len(captures))
	}
	studies := map[string]bool{}
	for _, f := range files {
		py := exec.Command(testenv.Python(t, "pydicom"), "-c", "import pydicom,sys; print(pydicom.dcmread(sys.argv[1]).StudyInstanceUID)", f)
		o, err := py.Output()
		if err != nil {
			t.Fatalf("pydicom: %v", err)
		}
		studies[strings.TrimSpace(string(o))] = true
	}
	for _, c := range captures {
		study := filepath.Base(filepath.Dir(filepath.Dir(c)))
		if !studies[study] {
			t.Errorf("capture %s is not filed under a source study", c)
		}
	}
	outPHI := filepath.Join(root, "out-phi")
	if _, err := Run(context.Background(), Options{Model: bundle, Input: manifest, Output: outPHI, IncludePHI: true}); err != nil {
		t.Fatal(err)
	}
	if hits := grepTree(t, filepath.Join(outPHI, report.ScoresFile), ids); len(hits) == 0 {
		t.Errorf("--include-phi wrote no patient identity (looked for %v)", ids)
	}

	// The same slices from the NIfTI volumes (DICOM value = FLAIR value × 16).
	fdir := shared.MustPath(t, "data", "medical", "lgg_flair")
	flair := [][]string{{"uri", "slice", "label", "mask_uri", "patient"}}
	for _, r := range rows {
		flair = append(flair, []string{filepath.Join(fdir, "volumes", r[4]+"_flair.nii.gz"), r[3], r[1], filepath.Join(fdir, "masks", r[4]+"_mask.nii.gz"), r[4]})
	}
	fmanifest := filepath.Join(root, "flair.csv")
	writeCSV(t, fmanifest, flair)
	fout := filepath.Join(root, "out-flair")
	if _, err := Run(context.Background(), Options{Model: bundle, Input: fmanifest, Output: fout}); err != nil {
		t.Fatal(err)
	}
	byKey := func(dir string, key func(scoreLine) string) map[string]float64 {
		m := map[string]float64{}
		for _, s := range readJSONL[scoreLine](t, filepath.Join(dir, report.ScoresFile)) {
			m[key(s)] = s.Score
		}
		return m
	}
	// DICOM rows are keyed by patient and mask slice, FLAIR rows by patient and slice.
	sliceOf := map[string]string{}
	for _, r := range abs[1:] {
		sliceOf[r[0]] = r[4] + "/" + r[3]
	}
	d := byKey(out, func(s scoreLine) string { return sliceOf[s.URI] })
	f := byKey(fout, func(s scoreLine) string { return fmt.Sprintf("%s/%d", s.Meta["patient"], *s.Slice) })
	if len(d) != len(rows) || len(f) != len(rows) {
		t.Fatalf("%d DICOM and %d FLAIR scores for %d slices", len(d), len(f), len(rows))
	}
	for k, v := range d {
		if w, ok := f[k]; !ok || math.Abs(v-w) > 1e-6 {
			t.Errorf("slice %s: DICOM score %.9f, FLAIR %.9f (present %v)", k, v, w, ok)
		}
	}
	js := readSummary(t, filepath.Join(out, report.SummaryFile))
	if m, _ := js["metrics"].(map[string]any); m == nil || m["count"] == nil {
		t.Errorf("DICOM run has no metrics: %v", js)
	}
}

// TestRealBundle scores magnetic tiles with a trained bundle named by
// $MULTIAD_TEST_BUNDLE (skipped without it), writing into
// $MULTIAD_TEST_OUT when set (to look at the report).
func TestRealBundle(t *testing.T) {
	b := os.Getenv("MULTIAD_TEST_BUNDLE")
	if b == "" {
		t.Skip("MULTIAD_TEST_BUNDLE not set")
	}
	root := t.TempDir()
	data := filepath.Join(root, "tiles")
	inputs := mvtecSubset(t, data, 6, 6)
	out := os.Getenv("MULTIAD_TEST_OUT")
	if out == "" {
		out = filepath.Join(root, "out")
	}
	sum, err := Run(context.Background(), Options{Model: b, Input: data, Output: out, Heatmaps: report.HeatmapsAll, Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("summary: %+v; metrics %+v", sum, sum.Metrics)
	if sum.Inputs != len(inputs) || sum.Scored != 12 || sum.Failed != 5 {
		t.Errorf("inputs %d scored %d failed %d", sum.Inputs, sum.Scored, sum.Failed)
	}
}

// TestAllInputsFail: a run where nothing decodes still writes every output
// and succeeds without --max-failures.
func TestAllInputsFail(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "in")
	writeFile(t, filepath.Join(data, "a.png"), []byte("nope"))
	writeFile(t, filepath.Join(data, "sub", "b.dcm"), nil)
	out := filepath.Join(root, "out")
	sum, err := Run(context.Background(), Options{Model: testBundle(t), Input: data, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Inputs != 2 || sum.Scored != 0 || sum.Failed != 2 {
		t.Errorf("inputs %d scored %d failed %d, want 2, 0, 2", sum.Inputs, sum.Scored, sum.Failed)
	}
	for _, f := range []string{report.ScoresFile, report.FailuresFile, report.SummaryFile, report.ReportFile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := Run(context.Background(), Options{Model: testBundle(t), Input: filepath.Join(root, "missing"), Output: out}); err == nil {
		t.Error("Run on a missing input succeeded")
	}
}
