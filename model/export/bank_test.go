package export

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/raster"
	"github.com/multiad/multiad/model/bank"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/teacher"
)

// standInBank builds a memory bank from the features of n random images
// (seed 11) of the stand-in teacher.
func standInBank(t *testing.T, tch []byte, S, n, size int) *bank.Bank {
	t.Helper()
	ss := teacherSamples(t, tch, randomImages(n, S, 11), n, S)
	f8s, f16s := make([][]float32, n), make([][]float32, n)
	for i, s := range ss {
		f8s[i], f16s[i] = s.Feats[1], s.Feats[2]
	}
	bk, err := bank.Build(f8s, f16s, S, size, bank.CoresetOptions{Proj: 16, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return bk
}

// TestBankHead exports the bank head and compares ONNX Runtime's maps and
// scores with the Go reference (bank.Score), with and without blur.
func TestBankHead(t *testing.T) {
	const S, N = 64, 6
	tch := standInTeacher(t, S)
	bk := standInBank(t, tch, S, 5, 150)
	images := randomImages(N, S, 12)
	samples := teacherSamples(t, tch, images, N, S)
	for _, sigma := range []float64{0, 2} {
		model, err := Build(tch, Options{Size: S, Head: HeadBank, Bank: bk, Map: student.MapConfig{Fuse: student.FuseSum, Sigma: sigma}})
		if err != nil {
			t.Fatal(err)
		}
		gotMaps, gotScores := runGraph(t, model, images, N, S)
		want := make([][]float32, N)
		for i, s := range samples {
			if want[i], _, err = bk.Score(s.Feats[1], s.Feats[2], sigma, 1); err != nil {
				t.Fatal(err)
			}
		}
		compareMaps(t, S, gotMaps, gotScores, want, nil)
	}
}

// TestBankDistances checks the graph's patch distances against the
// brute-force Go reference (bank.Nearest) on MobileNetV2 features of
// magnetic tiles at 256 px, within 1e-4 (absolute, or relative above 1).
func TestBankDistances(t *testing.T) {
	const S = 256
	tt, err := teacher.Import(shared.MustPath(t, "weights", "mobilenet_v2", "mobilenet_v2_1.0_224.uint8.tflite"), teacher.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tonnx, err := tt.FeaturesONNX()
	if err != nil {
		t.Fatal(err)
	}
	imgs := tileImages(t, S, 4)
	ss := teacherSamples(t, tonnx, imgs, 4, S)
	// Bank from the first three images, queries from the fourth.
	var f8s, f16s [][]float32
	for _, s := range ss[:3] {
		f8s, f16s = append(f8s, s.Feats[1]), append(f16s, s.Feats[2])
	}
	bk, err := bank.Build(f8s, f16s, S, 1000, bank.CoresetOptions{Proj: 32, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	h8, h16 := S/8, S/16
	q := ss[3]
	e, err := bank.Embed(q.Feats[1], q.Feats[2], S)
	if err != nil {
		t.Fatal(err)
	}
	want := bank.Nearest(bk.Vectors, e, bk.D(), 0)
	// One product over the whole bank, the default chunks, and chunks of 7
	// vectors (the last one shorter): the same distances, bit for bit.
	defer func(v int) { chunkBytes = v }(chunkBytes)
	var first []float32
	for _, c := range []struct {
		name  string
		bytes int
	}{{"one product", 1 << 40}, {"default chunks", chunkBytes}, {"7-vector chunks", 7 * 4 * h8 * h8}} {
		chunkBytes = c.bytes
		b := onnxb.New()
		f8 := b.Input("f8", onnx.TensorProto_FLOAT, "N", bk.C8, h8, h8)
		f16 := b.Input("f16", onnx.TensorProto_FLOAT, "N", bk.C16, h16, h16)
		b.Output(bankDistances(b, f8, f16, bk, S), onnx.TensorProto_FLOAT, "N", h8, h8)
		model, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out := runModel(t, model, []string{"f8", "f16"}, nil, ort.Tensor{Shape: []int64{1, int64(bk.C8), int64(h8), int64(h8)}, Data: q.Feats[1]},
			ort.Tensor{Shape: []int64{1, int64(bk.C16), int64(h16), int64(h16)}, Data: q.Feats[2]})
		var worst, lo, hi float64 = 0, math.Inf(1), 0
		for i, w := range want {
			d := math.Abs(float64(out[0].Data[i])-float64(w)) / math.Max(1, float64(w))
			worst = math.Max(worst, d)
			lo, hi = math.Min(lo, float64(w)), math.Max(hi, float64(w))
		}
		t.Logf("%s: %d patches against %d bank vectors of %d dims: distances in [%.4g, %.4g], max |ONNX − Go| (relative above 1) %.3g", c.name, len(want), bk.M(), bk.D(), lo, hi, worst)
		if worst > 1e-4 || !(hi > lo) {
			t.Errorf("%s: ONNX distances differ from the brute-force reference by %g", c.name, worst)
		}
		if first == nil {
			first = out[0].Data
			continue
		}
		for i := range first {
			if out[0].Data[i] != first[i] {
				t.Errorf("%s: patch %d: distance %v, one product gives %v", c.name, i, out[0].Data[i], first[i])
				break
			}
		}
	}
}

// tileImages preprocesses the first n magnetic-tile training normals.
func tileImages(t *testing.T, S, n int) []float32 {
	t.Helper()
	dir := shared.MustPath(t, "data", "industrial", "magnetic_tile", "train", "good")
	files, err := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if err != nil || len(files) < n {
		t.Fatalf("%d tiles in %s: %v", len(files), dir, err)
	}
	var out []float32
	for _, f := range files[:n] {
		out = append(out, loadTensor(t, f, S)...)
	}
	return out
}

// TestFusedHead exports the fused head and compares ONNX Runtime's maps
// with the documented combination of the two heads computed in Go: GoMLX's
// student map and bank.Score's map, each standardised, summed (Fuse).
func TestFusedHead(t *testing.T) {
	const S, N = 64, 6
	tch := standInTeacher(t, S)
	bk := standInBank(t, tch, S, 5, 150)
	images := randomImages(N, S, 13)
	samples := teacherSamples(t, tch, images, N, S)
	res, smaps, _ := tinyStudent(t, S, samples, nil)
	norms := [2]Norm{{Mean: 0.3, Std: 0.05}, {Mean: 2, Std: 0.7}}
	want := make([][]float32, N)
	for i, s := range samples {
		bm, _, err := bk.Score(s.Feats[1], s.Feats[2], res.Config.Map.Sigma, 1)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = make([]float32, S*S)
		for j := range bm { // the documented combination, written out
			want[i][j] = float32((float64(smaps[i][j])-0.3)/0.05 + (float64(bm[j])-2)/0.7)
		}
		if f := Fuse(smaps[i], bm, norms); math.Abs(float64(f[7]-want[i][7])) > 1e-5 {
			t.Fatalf("Fuse %g, want %g", f[7], want[i][7])
		}
	}
	opt := studentOptions(res)
	opt.Head, opt.Bank, opt.Norms = HeadFused, bk, norms
	model, err := Build(tch, opt)
	if err != nil {
		t.Fatal(err)
	}
	gotMaps, gotScores := runGraph(t, model, images, N, S)
	compareMaps(t, S, gotMaps, gotScores, want, nil)
	opt.Norms[1].Std = 0
	if _, err := Build(tch, opt); err == nil {
		t.Error("fused head with a zero standard deviation: no error")
	}
	opt.Head, opt.Bank = HeadBank, nil
	if _, err := Build(tch, opt); err == nil {
		t.Error("bank head without a bank: no error")
	}
}

// loadTensor decodes and preprocesses one image file at size S.
func loadTensor(t *testing.T, path string, S int) []float32 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ims, err := raster.Decode(data, pixels.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	x, err := preprocess.Tensor(ims[0], preprocess.Default(S))
	if err != nil {
		t.Fatal(err)
	}
	return x
}
