package bank

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/multiad/multiad/internal/testenv"
)

func randomVectors(n, D int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 5))
	x := make([]float32, n*D)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

// clustered returns k well-separated clusters of m vectors each: centres
// 100 apart on distinct axes, spread ±1.
func clustered(k, m, D int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 6))
	x := make([]float32, 0, k*m*D)
	for i := 0; i < m; i++ {
		for c := 0; c < k; c++ {
			for j := 0; j < D; j++ {
				v := float32(r.Float64()*2 - 1)
				if j == c {
					v += 100
				}
				x = append(x, v)
			}
		}
	}
	return x
}

func TestCoresetDeterministic(t *testing.T) {
	const D = 40
	x := randomVectors(3000, D, 1)
	for _, proj := range []int{0, 8} {
		a, ra, err := Coreset(x, D, 100, CoresetOptions{Proj: proj, Seed: 7, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		b, rb, err := Coreset(x, D, 100, CoresetOptions{Proj: proj, Seed: 7, Threads: 3})
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := Coreset(x, D, 100, CoresetOptions{Proj: proj, Seed: 8, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) || ra != rb {
			t.Errorf("proj %d: same seed, different coresets (radius %g vs %g)", proj, ra, rb)
		}
		if slices.Equal(a, c) {
			t.Errorf("proj %d: seeds 7 and 8 chose the same coreset", proj)
		}
		seen := map[int]bool{}
		for _, i := range a {
			if seen[i] || i < 0 || i >= 3000 {
				t.Fatalf("proj %d: index %d repeated or out of range", proj, i)
			}
			seen[i] = true
		}
	}
}

// TestCoresetCovers checks, in the full space (no projection), that the
// returned radius is the brute-force covering radius and that greedy
// selection beats random subsets of the same size; and, with a projection,
// that k clusters get one centre each (a random subset almost never does).
func TestCoresetCovers(t *testing.T) {
	const D, N, n = 16, 2000, 60
	x := randomVectors(N, D, 2)
	idx, r, err := Coreset(x, D, n, CoresetOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	core := Select(x, D, idx)
	var worst float64
	for _, d := range nearestF64(core, x, D) {
		worst = math.Max(worst, d)
	}
	if math.Abs(worst-r) > 1e-4*r {
		t.Errorf("radius %g, brute force %g", r, worst)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for trial := 0; trial < 5; trial++ {
		rand := Select(x, D, rng.Perm(N)[:n])
		var rr float64
		for _, d := range nearestF64(rand, x, D) {
			rr = math.Max(rr, d)
		}
		if rr <= r {
			t.Errorf("a random subset covers with radius %g ≤ the coreset's %g", rr, r)
		}
	}
	t.Logf("coreset radius %g (brute force %g)", r, worst)

	const k = 12
	y := clustered(k, 50, D, 4)
	idx, r, err = Coreset(y, D, k, CoresetOptions{Proj: 6, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for _, i := range idx {
		got[i%k] = true // vector i belongs to cluster i mod k
	}
	if len(got) != k {
		t.Errorf("%d centres cover %d of %d clusters", len(idx), len(got), k)
	}
	var worstY float64
	for _, d := range nearestF64(Select(y, D, idx), y, D) {
		worstY = math.Max(worstY, d)
	}
	if worstY > 2*math.Sqrt(D) { // a cluster's diameter
		t.Errorf("covering radius %g exceeds a cluster's diameter", worstY)
	}
	t.Logf("clusters: projected radius %g, full-space radius %g", r, worstY)
	// Everything: radius 0.
	if idx, r, err := Coreset(y, D, 10_000, CoresetOptions{}); err != nil || len(idx) != len(y)/D || r != 0 {
		t.Errorf("n ≥ N: %d indices, radius %g, %v", len(idx), r, err)
	}
	if _, _, err := Coreset(nil, D, 5, CoresetOptions{}); err == nil {
		t.Error("empty input: no error")
	}
}

// TestCoresetGreedy checks the pruned selection against a plain greedy
// k-center written out here (float64, no pruning), started from the same
// first centre.
func TestCoresetGreedy(t *testing.T) {
	const D, N, n = 12, 1500, 80
	x := randomVectors(N, D, 21)
	idx, _, err := Coreset(x, D, n, CoresetOptions{Seed: 9, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	minD := make([]float64, N)
	for i := range minD {
		minD[i] = math.Inf(1)
	}
	want := []int{idx[0]}
	for len(want) < n {
		c := want[len(want)-1]
		bi, bd := -1, -1.0
		for i := 0; i < N; i++ {
			var s float64
			for k := 0; k < D; k++ {
				d := float64(x[i*D+k]) - float64(x[c*D+k])
				s += d * d
			}
			minD[i] = math.Min(minD[i], s)
			if minD[i] > bd {
				bi, bd = i, minD[i]
			}
		}
		want = append(want, bi)
	}
	if !slices.Equal(idx, want) {
		t.Errorf("coreset differs from plain greedy selection:\n%v\n%v", idx, want)
	}
}

// nearestF64 is the distance from each vector of x to its nearest in
// bank, in float64: a reference independent of sqDist.
func nearestF64(bank, x []float32, D int) []float64 {
	out := make([]float64, len(x)/D)
	for i := range out {
		best := math.Inf(1)
		for j := 0; j < len(bank)/D; j++ {
			var s float64
			for c := 0; c < D; c++ {
				d := float64(x[i*D+c]) - float64(bank[j*D+c])
				s += d * d
			}
			best = math.Min(best, s)
		}
		out[i] = math.Sqrt(best)
	}
	return out
}

func TestNearest(t *testing.T) {
	const D = 37 // not a multiple of the unrolling
	bank := randomVectors(300, D, 8)
	q := randomVectors(200, D, 9)
	copy(q[5*D:6*D], bank[17*D:18*D]) // an exact match: distance 0
	got := Nearest(bank, q, D, 3)
	want := nearestF64(bank, q, D)
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-5*math.Max(1, want[i]) {
			t.Errorf("query %d: %g, want %g", i, got[i], want[i])
		}
	}
	if got[5] != 0 {
		t.Errorf("exact match at distance %g", got[5])
	}
}

// TestEmbedAgainstTorch compares Embed, Nearest and Map (without blur)
// with the peer reference's PyTorch code (shared/reference/peer:
// F.interpolate bilinear align_corners=False, torch.cat, F.avg_pool2d(3, 1,
// 1), torch.cdist) on random features.
func TestEmbedAgainstTorch(t *testing.T) {
	const S, c8, c16 = 64, 5, 7
	h8, h16 := S/8, S/16
	r := rand.New(rand.NewPCG(10, 10))
	feat := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	trainF8, trainF16 := feat(3*c8*h8*h8), feat(3*c16*h16*h16)
	testF8, testF16 := feat(c8*h8*h8), feat(c16*h16*h16)
	var bankV []float32
	for i := 0; i < 3; i++ {
		e, err := Embed(trainF8[i*c8*h8*h8:(i+1)*c8*h8*h8], trainF16[i*c16*h16*h16:(i+1)*c16*h16*h16], S)
		if err != nil {
			t.Fatal(err)
		}
		bankV = append(bankV, e...)
	}
	emb, err := Embed(testF8, testF16, S)
	if err != nil {
		t.Fatal(err)
	}
	dist := Nearest(bankV, emb, c8+c16, 1)
	m := Map(dist, S, 0)

	py := testenv.Python(t, "torch")
	in := map[string]any{"S": S, "c8": c8, "c16": c16, "train8": trainF8, "train16": trainF16, "test8": testF8, "test16": testF16}
	raw, _ := json.Marshal(in)
	f := filepath.Join(t.TempDir(), "in.json")
	if err := os.WriteFile(f, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", torchScript, f)
	cmd.Stderr = os.Stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("torch reference: %v", err)
	}
	var want struct{ Emb, Dist, Map []float64 }
	if err := json.Unmarshal(res, &want); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []float32, want []float64) {
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, torch %d", name, len(got), len(want))
		}
		var worst float64
		for i := range got {
			worst = math.Max(worst, math.Abs(float64(got[i])-want[i]))
		}
		t.Logf("%s: max |Go − torch| %.3g", name, worst)
		if worst > 1e-5 {
			t.Errorf("%s differs from torch by %g", name, worst)
		}
	}
	check("embedding", emb, want.Emb)
	check("distances", dist, want.Dist)
	check("map", m, want.Map)
}

const torchScript = `
import json, sys, torch, torch.nn.functional as F
a = json.load(open(sys.argv[1]))
S, c8, c16 = a["S"], a["c8"], a["c16"]
h8, h16 = S // 8, S // 16
def embed(f8, f16):
    f8 = torch.tensor(f8, dtype=torch.float64).view(-1, c8, h8, h8)
    f16 = torch.tensor(f16, dtype=torch.float64).view(-1, c16, h16, h16)
    f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
    e = F.avg_pool2d(torch.cat([f8, f16], 1), 3, 1, 1)
    return e.permute(0, 2, 3, 1).reshape(-1, c8 + c16)
bank = embed(a["train8"], a["train16"])
q = embed(a["test8"], a["test16"])
d = torch.cdist(q, bank).min(1).values
m = F.interpolate(d.view(1, 1, h8, h8), size=(S, S), mode="bilinear", align_corners=False)
print(json.dumps({"emb": q.flatten().tolist(), "dist": d.tolist(), "map": m.flatten().tolist()}))
`
