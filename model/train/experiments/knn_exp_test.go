//go:build experiment

package experiments

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/bank"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/train"
)

// patchVectors turns a sample's stride-8 and stride-16 teacher features
// into 3×3-averaged patch vectors at stride 8: [H8*W8][C8+C16]. By default
// they are the memory-bank head's (bank.Embed: stride 16 upsampled
// bilinearly, the average counting zero padding, as the reference recipe);
// nearest upsamples stride 16 by nearest neighbour and exclude divides each
// average by the neighbours that exist, the two deviations of this
// experiment before the fix (bench/ACCURACY.md, "The kNN experiment's
// defect").
func patchVectors(s train.Sample, S int, c8, c16 int, nearest, exclude bool) [][]float32 {
	h8, h16 := S/8, S/16
	D := c8 + c16
	if !nearest && !exclude && c16 > 0 {
		flat, err := bank.Embed(s.Feats[1], s.Feats[2], S)
		if err != nil {
			panic(err)
		}
		out := make([][]float32, h8*h8)
		for i := range out {
			out[i] = flat[i*D : (i+1)*D]
		}
		return out
	}
	up := nn.BilinearMatrix(max(h16, 1), h8)
	raw := make([][]float32, h8*h8)
	for y := 0; y < h8; y++ {
		for x := 0; x < h8; x++ {
			v := make([]float32, D)
			for c := 0; c < c8; c++ {
				v[c] = s.Feats[1][(c*h8+y)*h8+x]
			}
			for c := 0; c < c16; c++ {
				f := s.Feats[2][c*h16*h16:]
				if nearest {
					v[c8+c] = f[(y/2)*h16+x/2]
					continue
				}
				var a float64
				for i, wy := range up[y] {
					for j, wx := range up[x] {
						a += wy * wx * float64(f[i*h16+j])
					}
				}
				v[c8+c] = float32(a)
			}
			raw[y*h8+x] = v
		}
	}
	out := make([][]float32, h8*h8)
	for y := 0; y < h8; y++ {
		for x := 0; x < h8; x++ {
			v := make([]float32, D)
			n := 0
			for dy := -1; dy <= 1; dy++ {
				for dx := -1; dx <= 1; dx++ {
					yy, xx := y+dy, x+dx
					if yy < 0 || xx < 0 || yy >= h8 || xx >= h8 {
						continue
					}
					for c, f := range raw[yy*h8+xx] {
						v[c] += f
					}
					n++
				}
			}
			if !exclude {
				n = 9
			}
			for c := range v {
				v[c] /= float32(n)
			}
			out[y*h8+x] = v
		}
	}
	return out
}

// TestExperimentKNN is a PatchCore-style diagnostic on the teacher features
// alone (MULTIAD_EXP=1; EXP_S, EXP_BANK fraction of training patches kept
// at random (default 0.1, the reference's), EXP_CORESET=N for a greedy
// coreset of N instead, EXP_KNN16 for stride-16 patches alone, EXP_KNN_NORM
// to scale each scale's part of a patch vector to unit length,
// EXP_KNN_UP=nearest and EXP_KNN_PAD=exclude for the patch construction
// before the fix, EXP_NTEST test images per class or EXP_EVERY=k for every
// k-th test image; pixel AUROC at full and
// at half resolution, the reference's):
// how far the frozen MobileNetV2 features at this resolution can go on the
// magnetic tiles, independent of any student.
func TestExperimentKNN(t *testing.T) {
	S, root := tilesExperiment(t)
	frac := envF("EXP_BANK", 0.1)
	nearestUp, exclude := os.Getenv("EXP_KNN_UP") == "nearest", os.Getenv("EXP_KNN_PAD") == "exclude"
	_, all := loadDir(t, filepath.Join(root, "train", "good"), S, 0)
	normals := mobileNetSamples(t, all, S)
	c8 := len(normals[0].Feats[1]) / ((S / 8) * (S / 8))
	c16 := len(normals[0].Feats[2]) / ((S / 16) * (S / 16))
	h8 := S / 8
	vectors := func(s train.Sample) [][]float32 { return patchVectors(s, S, c8, c16, nearestUp, exclude) }
	split := c8 // where the stride-16 part of a patch vector starts
	if os.Getenv("EXP_KNN16") != "" {
		// Stride-16 features alone, 3×3-averaged.
		h8, split = S/16, 0
		vectors = func(s train.Sample) [][]float32 {
			// patchVectors at half the size reads the stride-16 maps as
			// its stride-8 ones.
			s.Feats[1] = s.Feats[2]
			return patchVectors(s, S/2, c16, 0, nearestUp, exclude)
		}
	}
	if os.Getenv("EXP_KNN_NORM") != "" { // each scale's part of a patch vector to unit length
		base := vectors
		vectors = func(s train.Sample) [][]float32 {
			vs := base(s)
			for _, v := range vs {
				for _, part := range [][]float32{v[:split], v[split:]} {
					var n float32
					for _, f := range part {
						n += f * f
					}
					n = float32(math.Sqrt(float64(n))) + 1e-6
					for i := range part {
						part[i] /= n
					}
				}
			}
			return vs
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var memory [][]float32
	if n := int(envF("EXP_CORESET", 0)); n > 0 {
		var all []float32
		for _, s := range normals {
			for _, v := range vectors(s) {
				all = append(all, v...)
			}
		}
		D := c8 + c16
		if os.Getenv("EXP_KNN16") != "" {
			D = c16
		}
		start := time.Now()
		idx, r, err := bank.Coreset(all, D, n, bank.CoresetOptions{Proj: 64, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("coreset of %d of %d patches in %v, radius %.4g", n, len(all)/D, time.Since(start), r)
		for _, i := range idx {
			memory = append(memory, all[i*D:(i+1)*D])
		}
	} else {
		for _, s := range normals {
			for _, v := range vectors(s) {
				if rng.Float64() < frac {
					memory = append(memory, v)
				}
			}
		}
	}
	t.Logf("bank %d vectors of %d dims", len(memory), len(memory[0]))
	nearest := nearestFunc(t, memory)
	labels, pixLabels, test, _ := tilesTestSet(t, root, S)
	if k := int(envF("EXP_EVERY", 1)); k > 1 { // every k-th test image, in class and name order
		var l, pl []bool
		var ts []train.Sample
		for i := 0; i < len(test); i += k {
			l, pl, ts = append(l, labels[i]), append(pl, pixLabels[i*S*S:(i+1)*S*S]...), append(ts, test[i])
		}
		labels, pixLabels, test = l, pl, ts
	}
	start := time.Now()
	var scores, pix, raw []float64
	var half []float32
	var halfLab []bool
	for j, s := range test {
		m := nearest(vectors(s))
		for i, d := range m {
			m[i] = float32(math.Sqrt(math.Max(float64(d), 0)))
		}
		up := separable(m, h8, nn.BilinearMatrix(h8, S))
		up = blurMap(up, S, train.DefaultConfig(S).Map.Sigma)
		for _, v := range up {
			pix = append(pix, float64(v))
		}
		half, halfLab = appendHalfRes(half, halfLab, up, pixLabels[j*S*S:(j+1)*S*S])
		scores = append(scores, topMean(up, 0))
		raw = append(raw, float64(maxOf(m)))
		if j%100 == 0 {
			t.Logf("%d/%d test images, %v", j, len(test), time.Since(start))
		}
	}
	t.Logf("kNN S=%d bank %d (up %s, pad %s): image AUROC %.4f (max before the blur %.4f), pixel AUROC %.4f (half resolution %.4f)", S, len(memory),
		map[bool]string{false: "bilinear", true: "nearest"}[nearestUp], map[bool]string{false: "counted", true: "excluded"}[exclude],
		auroc(labels, scores), auroc(labels, raw), auroc(pixLabels, pix), auroc(halfLab, float64s(half)))
}

// nearestFunc returns a function giving, for each query vector, its
// squared Euclidean distance to the nearest vector of bank, computed in
// ONNX Runtime (one MatMul against the bank, then a ReduceMin).
func nearestFunc(t testing.TB, bank [][]float32) func(q [][]float32) []float32 {
	D, M := len(bank[0]), len(bank)
	bt := make([]float32, D*M) // [D, M]
	bn := make([]float32, M)
	for j, v := range bank {
		for c, f := range v {
			bt[c*M+j] = f
			bn[j] += f * f
		}
	}
	b := onnxb.New()
	q := b.Input("q", onnx.TensorProto_FLOAT, "N", D)
	dot := b.Op("MatMul", []string{q, b.Const("bankT", []int64{int64(D), int64(M)}, bt)}, nil)
	d := b.Op("Add", []string{b.Op("Mul", []string{dot, b.Scalar("minus2", -2)}, nil), b.Const("bankNorm", []int64{1, int64(M)}, bn)}, nil)
	out := b.Op("ReduceMin", []string{d}, onnxb.Attrs{"axes": []int64{1}, "keepdims": int64(0)})
	b.Output(out, onnx.TensorProto_FLOAT, "N")
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewSession(data, nil, nil, ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return func(qs [][]float32) []float32 {
		flat := make([]float32, 0, len(qs)*D)
		for _, v := range qs {
			flat = append(flat, v...)
		}
		res, err := sess.Run(ort.Tensor{Shape: []int64{int64(len(qs)), int64(D)}, Data: flat})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range qs {
			for _, f := range v {
				res[0].Data[i] += f * f
			}
		}
		return res[0].Data
	}
}
