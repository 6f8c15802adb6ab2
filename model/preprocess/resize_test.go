package preprocess

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/multiad/multiad/internal/shared"
)

// pilPython returns a Python with PIL and NumPy: $MULTIAD_PYTHON, else
// /usr/bin/python3 (Debian's python3-pil), else python3 on PATH; the test is
// skipped when there is none.
func pilPython(t *testing.T) string {
	t.Helper()
	cands := []string{"/usr/bin/python3", "python3"}
	if p := os.Getenv("MULTIAD_PYTHON"); p != "" {
		cands = append([]string{p}, cands...)
	}
	for _, c := range cands {
		if err := exec.Command(c, "-c", "import PIL.Image, numpy").Run(); err == nil {
			return c
		}
	}
	t.Skipf("no Python with PIL and NumPy among %v (install python3-pil): the PIL oracle cannot run", cands)
	return ""
}

// pilScript resizes float32 planes (or JPEGs, which it decodes to 8-bit
// gray first and writes out as the input) with PIL's Image.resize(...,
// BILINEAR) in mode "F" (32-bit float, so no rounding to 8 bits).
const pilScript = `
import json, sys
import numpy as np
from PIL import Image
for j in json.load(open(sys.argv[1])):
    if j.get("jpeg"):
        a = np.asarray(Image.open(j["jpeg"]).convert("L"), dtype=np.float32)
        a.tofile(j["src"])
        j["h"], j["w"] = a.shape
    else:
        a = np.fromfile(j["src"], dtype=np.float32).reshape(j["h"], j["w"])
    out = Image.fromarray(a, mode="F").resize((j["ow"], j["oh"]), Image.BILINEAR)
    np.asarray(out, dtype=np.float32).tofile(j["dst"])
    print(j["h"], j["w"])
`

type pilJob struct {
	JPEG   string `json:"jpeg,omitempty"`
	Src    string `json:"src"`
	Dst    string `json:"dst"`
	H      int    `json:"h"`
	W      int    `json:"w"`
	OH     int    `json:"oh"`
	OW     int    `json:"ow"`
	name   string
	source []float32
}

func writeF32(t *testing.T, path string, v []float32) {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readF32(t *testing.T, path string) []float32 {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// TestResizeAntialiasPIL compares ResizeAntialiased with PIL, an
// independent implementation, on real magnetic-tile images (decoded by PIL
// and resized to 128 and 64 px, factors 1.7–9.6) and on random planes of
// odd sizes (shrinking, mixed shrinking/enlarging, non-square), in grey
// levels (0–255).
func TestResizeAntialiasPIL(t *testing.T) {
	py := pilPython(t)
	dir := t.TempDir()
	var jobs []*pilJob
	good := shared.MustPath(t, "data", "industrial", "magnetic_tile", "train", "good")
	ents, err := os.ReadDir(good)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for i := 0; i < len(names) && i < 200; i += 40 {
		for _, o := range []int{128, 64} {
			jobs = append(jobs, &pilJob{JPEG: filepath.Join(good, names[i]), OH: o, OW: o, name: fmt.Sprintf("%s→%d", names[i], o)})
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range [][4]int{{601, 373, 256, 256}, {97, 203, 32, 64}, {1000, 30, 128, 16}, {33, 47, 32, 32}, {50, 40, 64, 32}, {255, 257, 128, 96}, {1024, 1024, 256, 256}} {
		j := &pilJob{H: s[0], W: s[1], OH: s[2], OW: s[3], name: fmt.Sprintf("random %dx%d→%dx%d", s[0], s[1], s[2], s[3])}
		j.source = make([]float32, j.H*j.W)
		for i := range j.source {
			j.source[i] = float32(r.IntN(256))
		}
		jobs = append(jobs, j)
	}
	for i, j := range jobs {
		j.Src = filepath.Join(dir, fmt.Sprintf("src%d.f32", i))
		j.Dst = filepath.Join(dir, fmt.Sprintf("dst%d.f32", i))
		if j.source != nil {
			writeF32(t, j.Src, j.source)
		}
	}
	spec, _ := json.Marshal(jobs)
	specPath := filepath.Join(dir, "jobs.json")
	if err := os.WriteFile(specPath, spec, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", pilScript, specPath).CombinedOutput()
	if err != nil {
		t.Fatalf("PIL: %v\n%s", err, out)
	}
	var hw [][2]int
	for _, line := range splitLines(string(out)) {
		var h, w int
		if _, err := fmt.Sscan(line, &h, &w); err == nil {
			hw = append(hw, [2]int{h, w})
		}
	}
	if len(hw) != len(jobs) {
		t.Fatalf("PIL reported %d sizes for %d jobs:\n%s", len(hw), len(jobs), out)
	}
	for i, j := range jobs {
		j.H, j.W = hw[i][0], hw[i][1]
		src := j.source
		if src == nil {
			src = readF32(t, j.Src)
		}
		if len(src) != j.H*j.W {
			t.Fatalf("%s: %d source values for %dx%d", j.name, len(src), j.H, j.W)
		}
		want := readF32(t, j.Dst)
		if len(want) != j.OH*j.OW {
			t.Fatalf("%s: PIL gave %d values", j.name, len(want))
		}
		norm := make([]float32, len(src))
		for k, v := range src {
			norm[k] = v / 255
		}
		got := make([]float32, j.OH*j.OW)
		ResizeAntialiased(norm, j.H, j.W, got, j.OH, j.OW)
		old := make([]float32, j.OH*j.OW)
		Resize(norm, j.H, j.W, old, j.OH, j.OW)
		var sum, maxd, sumOld float64
		for k, v := range want {
			d := math.Abs(float64(got[k])*255 - float64(v))
			sum += d
			maxd = math.Max(maxd, d)
			sumOld += math.Abs(float64(old[k])*255 - float64(v))
		}
		mean := sum / float64(len(want))
		t.Logf("%-36s %4dx%-4d → %3dx%-3d mean |Δ| %.2g, max %.2g grey levels (plain bilinear: mean %.3g)", j.name, j.H, j.W, j.OH, j.OW, mean, maxd, sumOld/float64(len(want)))
		if mean > 0.01 || maxd > 0.05 {
			t.Errorf("%s: mean |Δ| %.3g, max %.3g grey levels from PIL (want < 0.01, < 0.05)", j.name, mean, maxd)
		}
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// checker is a 1-pixel checkerboard of 0 and 1.
func checker(h, w int) []float32 {
	c := make([]float32, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c[y*w+x] = float32((x + y) % 2)
		}
	}
	return c
}

func maxDev(v []float32, c float64) float64 {
	var d float64
	for _, x := range v {
		d = math.Max(d, math.Abs(float64(x)-c))
	}
	return d
}

// TestResizeCheckerboard: a fine checkerboard shrunk 4× (and by the tiles'
// non-integer 601/256) comes out near uniform grey. Plain bilinear samples
// it at 601/256 and keeps full-contrast aliases (its integer box
// pre-filter happens to average a 4× checkerboard exactly).
func TestResizeCheckerboard(t *testing.T) {
	for _, c := range []struct{ h, oh int }{{256, 64}, {1024, 256}, {601, 256}, {373, 128}} {
		dst := make([]float32, c.oh*c.oh)
		ResizeAntialiased(checker(c.h, c.h), c.h, c.h, dst, c.oh, c.oh)
		dev := maxDev(dst, 0.5)
		old := make([]float32, c.oh*c.oh)
		Resize(checker(c.h, c.h), c.h, c.h, old, c.oh, c.oh)
		t.Logf("%d→%d: antialiased max |v − 0.5| = %.4f; plain bilinear %.4f", c.h, c.oh, dev, maxDev(old, 0.5))
		if dev > 0.02 {
			t.Errorf("%d→%d: antialiased checkerboard deviates from grey by %.4f", c.h, c.oh, dev)
		}
	}
	old := make([]float32, 256*256)
	Resize(checker(601, 601), 601, 601, old, 256, 256)
	if maxDev(old, 0.5) < 0.3 {
		t.Errorf("plain bilinear 601→256 deviates only %.3f: the checkerboard no longer detects aliasing", maxDev(old, 0.5))
	}
}

// TestResizeAntialiasUpscaleUnchanged: when no axis shrinks, the
// antialiased resize is Resize bit for bit, and so are Tensor's outputs.
func TestResizeAntialiasUpscaleUnchanged(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, s := range [][4]int{{10, 32, 32, 32}, {31, 17, 64, 64}, {64, 64, 64, 64}, {100, 3, 128, 64}} {
		src := make([]float32, s[0]*s[1])
		for i := range src {
			src[i] = r.Float32()
		}
		a := make([]float32, s[2]*s[3])
		b := make([]float32, s[2]*s[3])
		Resize(src, s[0], s[1], a, s[2], s[3])
		ResizeAntialiased(src, s[0], s[1], b, s[2], s[3])
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				t.Fatalf("%v: [%d] %v vs %v", s, i, a[i], b[i])
			}
		}
	}
	img := gray16(40, 50, func(r, c int) float64 { return float64((r*31 + c*7) % 97) })
	cfg := Default(64)
	want, err := Tensor(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{ResizeBilinear, ResizeAntialias} {
		cfg.Resize = mode
		got, err := Tensor(img, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("resize %s: [%d] %v vs %v", mode, i, got[i], want[i])
			}
		}
	}
	// Shrinking, the modes differ, and "" is bilinear.
	big := gray16(150, 150, func(r, c int) float64 { return float64((r + c) % 2 * 1000) })
	cfg = Default(64)
	plain, _ := Tensor(big, cfg)
	cfg.Resize = ResizeBilinear
	plain2, _ := Tensor(big, cfg)
	cfg.Resize = ResizeAntialias
	aa, _ := Tensor(big, cfg)
	if maxDev(plain, 0.5) != maxDev(plain2, 0.5) || maxDev(aa, 0.5) >= maxDev(plain, 0.5) {
		t.Errorf("shrunk checkerboard: deviations %g (\"\"), %g (bilinear), %g (antialias)", maxDev(plain, 0.5), maxDev(plain2, 0.5), maxDev(aa, 0.5))
	}
	cfg.Resize = "lanczos"
	if _, err := Tensor(big, cfg); err == nil {
		t.Error("unknown resize accepted")
	}
}

// TestResizeManifest: a manifest written before the resize field existed
// decodes to "" and scores as bilinear; the field round-trips.
func TestResizeManifest(t *testing.T) {
	var old Config
	if err := json.Unmarshal([]byte(`{"size":64,"mode":"auto","low_percentile":0.5,"high_percentile":99.5}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.Resize != "" || old.Validate() != nil {
		t.Fatalf("old manifest: resize %q, validate %v", old.Resize, old.Validate())
	}
	big := gray16(150, 150, func(r, c int) float64 { return float64((r*13 + c*5) % 61) })
	a, _ := Tensor(big, old)
	b, _ := Tensor(big, Config{Size: 64, Mode: ModeAuto, Low: 0.5, High: 99.5, Resize: ResizeBilinear})
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("old manifest and bilinear differ at %d", i)
		}
	}
	c := Default(64)
	c.Resize = ResizeAntialias
	j, _ := json.Marshal(c)
	var back Config
	if err := json.Unmarshal(j, &back); err != nil || back != c {
		t.Errorf("round trip %s: %+v, %v", j, back, err)
	}
}
