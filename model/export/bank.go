package export

import (
	"fmt"

	"github.com/multiad/multiad/model/bank"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/onnxb"
)

// Head is the part of the scoring graph that makes the anomaly map.
type Head string

// Heads.
const (
	// HeadStudent is the teacher–student map (the default; "" means it too).
	HeadStudent Head = "student"
	// HeadBank is the memory bank's nearest-neighbour distance map
	// (model/bank); no student.
	HeadBank Head = "bank"
	// HeadFused is the sum of both heads' maps, each standardised by
	// Options.Norm: (student − μs)/σs + (bank − μb)/σb.
	HeadFused Head = "fused"
)

// ParseHead checks a head name ("" is HeadStudent).
func ParseHead(s string) (Head, error) {
	switch Head(s) {
	case "", HeadStudent:
		return HeadStudent, nil
	case HeadBank, HeadFused:
		return Head(s), nil
	}
	return "", fmt.Errorf("export: head %q: want student, bank or fused", s)
}

// Norm standardises a head's map in the fused head: (map − Mean) / Std.
type Norm struct {
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
}

// Fuse combines the student's and the bank's maps (S×S each) as the fused
// head does: (s − μs)/σs + (b − μb)/σb, with norms [student, bank]. It is
// the Go reference of the graph's fusion.
func Fuse(student, bankMap []float32, norms [2]Norm) []float32 {
	out := make([]float32, len(student))
	for i := range out {
		out[i] = float32((float64(student[i])-norms[0].Mean)/norms[0].Std + (float64(bankMap[i])-norms[1].Mean)/norms[1].Std)
	}
	return out
}

func (n Norm) valid() bool { return n.Std > 0 && n.Std < 1e30 && n.Mean == n.Mean }

// bankMap adds the bank head: from the teacher's stride-8 and stride-16
// features (NCHW) to the blurred distance map [N,S,S], as bank.Score does.
// Patch vectors and bank are centred on the bank's mean, which leaves the
// distances as they are and keeps ‖q‖² − 2q·b + ‖b‖² (one MatMul) far from
// cancellation; the squared distance is clipped at 0 before the square root.
func bankMap(b *onnxb.Builder, f8, f16 string, bk *bank.Bank, S int, sigma float64) string {
	d := bankDistances(b, f8, f16, bk, S)
	u := nn.BilinearMatrix(S/8, S)
	m := separable(b, d, u, u, "bank_upsample")
	if sigma <= 0 {
		return m
	}
	g := nn.GaussianMatrix(S, sigma)
	return separable(b, m, g, g, "bank_blur")
}

// bankDistances adds the patch distances [N,S/8,S/8] of bankMap.
func bankDistances(b *onnxb.Builder, f8, f16 string, bk *bank.Bank, S int) string {
	h8, h16 := S/8, S/16
	D, M, P := bk.D(), bk.M(), h8*h8
	up := nn.BilinearMatrix(h16, h8)
	e := b.Op("Concat", []string{f8, separable(b, f16, up, up, "bank_up_s16")}, onnxb.Attrs{"axis": int64(1)})
	box := bank.BoxMatrix(h8)
	e = separable(b, e, box, box, "bank_box")
	mean := make([]float64, D)
	for j := 0; j < M; j++ {
		for c, v := range bk.Vectors[j*D : (j+1)*D] {
			mean[c] += float64(v)
		}
	}
	mean32 := make([]float32, D)
	for c := range mean {
		mean32[c] = float32(mean[c] / float64(M))
	}
	e = b.Op("Sub", []string{e, b.Const("bank_mean", []int64{1, int64(D), 1, 1}, mean32)}, nil)
	q := b.Op("Reshape", []string{e, b.ConstInt64("bank_qshape", []int64{3}, []int64{0, int64(D), int64(P)})}, nil)
	q = b.Op("Transpose", []string{q}, onnxb.Attrs{"perm": []int64{0, 2, 1}}) // [N,P,D]
	// [q, 1] · [−2b; ‖b‖²] = ‖b‖² − 2q·b in one MatMul.
	q1 := b.Op("Pad", []string{q, b.ConstInt64("bank_pad", []int64{6}, []int64{0, 0, 0, 0, 0, 1}), b.Scalar("bank_one", 1)}, nil)
	w := make([]float32, (D+1)*M) // [D+1, M]
	for j := 0; j < M; j++ {
		var n float64
		for c, v := range bk.Vectors[j*D : (j+1)*D] {
			x := float64(v) - float64(mean32[c])
			w[c*M+j] = float32(-2 * x)
			n += x * x
		}
		w[D*M+j] = float32(n)
	}
	d2 := b.Op("Add", []string{nearestProduct(b, q1, w, D+1, P, M), reduce(b, "ReduceSumSquare", q, []int64{2}, 0)}, nil)
	d := b.Op("Sqrt", []string{b.Op("Relu", []string{d2}, nil)}, nil)
	return b.Op("Reshape", []string{d, b.ConstInt64("bank_mapshape", []int64{3}, []int64{0, int64(h8), int64(h8)})}, nil)
}

// chunkBytes bounds the [N, P, cols] product of one chunk of bank vectors
// against the patches, per image, so that a batch's products stay in the
// cache instead of streaming through memory (see nearestProduct).
var chunkBytes = 512 << 10

// nearestProduct adds min_j (q1 · w)[n, p, j], [N, P], from the patches
// q1 [N, P, D1] and the bank vectors w [D1, M] (row-major). The bank is
// split into chunks of columns, each its own initializer, multiplied and
// reduced on its own, and the chunks' minima are combined by one Min: every
// product and minimum is the one a single MatMul and ReduceMin would
// compute (TestBankDistances checks it bit for bit), but ONNX Runtime never
// holds the whole [N, P, M] product (537 MB at batch 8 for a 16,384-vector
// bank at 256 px, written to memory and read back), only one chunk's, which
// it reuses from its arena.
//
// Columns, not rows of patches: each chunk's MatMul prepacks only its own
// slice of the bank when the session is created. Row chunks shared one
// constant bank, which ONNX Runtime prepacked once per chunk: 128 times at
// 256 px, about half a second of every session's start, single-threaded.
func nearestProduct(b *onnxb.Builder, q1 string, w []float32, D1, P, M int) string {
	cols := max(1, min(M, chunkBytes/(4*P)))
	var mins []string
	for j0 := 0; j0 < M; j0 += cols {
		c := min(cols, M-j0)
		part := w
		if c < M {
			part = make([]float32, D1*c)
			for k := range D1 {
				copy(part[k*c:(k+1)*c], w[k*M+j0:k*M+j0+c])
			}
		}
		v := b.Const("bank_vectors", []int64{int64(D1), int64(c)}, part)
		mins = append(mins, reduce(b, "ReduceMin", b.Op("MatMul", []string{q1, v}, nil), []int64{2}, 0))
	}
	if len(mins) == 1 {
		return mins[0]
	}
	return b.Op("Min", mins, nil)
}

// fuseMaps adds the fused head's combination of two [N,S,S] maps.
func fuseMaps(b *onnxb.Builder, student, bankMap string, norms [2]Norm) string {
	std := func(m string, n Norm, name string) string {
		return b.Op("Mul", []string{b.Op("Sub", []string{m, b.Scalar(name+"_mean", float32(n.Mean))}, nil), b.Scalar(name+"_invstd", float32(1/n.Std))}, nil)
	}
	return b.Op("Add", []string{std(student, norms[0], "fuse_student"), std(bankMap, norms[1], "fuse_bank")}, nil)
}
