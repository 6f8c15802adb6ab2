// Package export writes the Multi-AD scoring graph as one ONNX model:
// image [N,3,S,S] → teacher (embedded ONNX graph) → student (trained
// weights) → per-scale 1 − cos → bilinear upsampling and Gaussian blur as
// MatMuls with the same constant matrices GoMLX uses → outputs
// anomaly_map [N,1,S,S] and score [N]. The batch axis is dynamic.
package export

import (
	"fmt"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/bank"
	"github.com/multiad/multiad/model/nn"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/teacher"
)

// Graph input and output names.
const (
	InputName = "image"
	MapName   = "anomaly_map"
	ScoreName = "score"
)

// Options describe the scoring graph.
type Options struct {
	Size    int               // image side S
	Student student.Config    // student architecture
	Map     student.MapConfig // fusion and blur
	// Weights are the student's variables (train.Result.Student).
	Weights map[string]student.Tensor
	// Head makes the map: the student's ("" or HeadStudent), the memory
	// bank's (Bank; Student and Weights unused) or both fused (Norms).
	Head Head
	// Bank is the memory bank of the bank and fused heads.
	Bank *bank.Bank
	// Norms standardise the student's and the bank's maps in the fused head.
	Norms [2]Norm
}

// TeacherFunc adds the teacher to b, reading image (a value [N,3,S,S]),
// and returns the names in b of its stride-4, -8 and -16 feature maps
// (NCHW). teacher.(*Teacher).BuildFeatures has this form (with a prefix).
type TeacherFunc func(b *onnxb.Builder, image string) ([3]string, error)

// Build returns the serialized scoring model. teacherONNX is an ONNX model with
// one input [N,3,S,S] and the outputs teacher.FeatureOutputs (NCHW, at
// strides 4, 8 and 16); its other outputs are dropped.
func Build(teacherONNX []byte, opt Options) ([]byte, error) {
	tb, err := onnxb.Load(teacherONNX)
	if err != nil {
		return nil, fmt.Errorf("export: teacher: %w", err)
	}
	if ins := tb.Inputs(); len(ins) != 1 {
		return nil, fmt.Errorf("export: teacher has inputs %v, want one (%q)", ins, InputName)
	}
	return BuildWith(tb.Opset(), func(b *onnxb.Builder, img string) ([3]string, error) {
		var tf [3]string
		outs, err := b.Embed(tb, "teacher/", map[string]string{tb.Inputs()[0]: img})
		if err != nil {
			return tf, err
		}
		for i, name := range teacher.FeatureOutputs {
			v, ok := outs[name]
			if !ok {
				return tf, fmt.Errorf("teacher has no output %q", name)
			}
			tf[i] = v
		}
		return tf, nil
	}, opt)
}

// BuildWith is Build with the teacher added by a function, on a builder of
// the given default-domain opset (≥ 13; onnxb.DefaultOpset for teachers
// built with onnxb.New).
func BuildWith(opset int64, addTeacher TeacherFunc, opt Options) ([]byte, error) {
	head, err := ParseHead(string(opt.Head))
	if err != nil {
		return nil, err
	}
	if head != HeadBank {
		if err := opt.Student.Validate(); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	}
	if head != HeadStudent {
		if opt.Bank == nil {
			return nil, fmt.Errorf("export: the %s head needs a memory bank", head)
		}
		if err := opt.Bank.Validate(); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		if opt.Bank.Size != opt.Size {
			return nil, fmt.Errorf("export: the memory bank is for %d px images, the graph for %d", opt.Bank.Size, opt.Size)
		}
	}
	if head == HeadFused && !(opt.Norms[0].valid() && opt.Norms[1].valid()) {
		return nil, fmt.Errorf("export: fused head: map statistics %+v need finite means and positive standard deviations", opt.Norms)
	}
	if err := opt.Map.Validate(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if opt.Size < 32 || opt.Size%16 != 0 {
		return nil, fmt.Errorf("export: image size %d must be a multiple of 16, at least 32", opt.Size)
	}
	if opset < 13 {
		return nil, fmt.Errorf("export: opset %d, need ≥ 13", opset)
	}
	b := onnxb.NewOpset(opset)
	S := opt.Size
	img := b.Input(InputName, onnx.TensorProto_FLOAT, "N", 3, S, S)
	tf, err := addTeacher(b, img)
	if err != nil {
		return nil, fmt.Errorf("export: teacher: %w", err)
	}
	var m string
	if head != HeadBank {
		w := &weights{m: opt.Weights, used: map[string]bool{}}
		sf := buildStudent(b, w, opt.Student, img)
		if w.err != nil {
			return nil, w.err
		}
		for k := range w.m {
			if !w.used[k] {
				return nil, fmt.Errorf("export: weight %q is not part of the student %+v", k, opt.Student)
			}
		}
		m = anomalyMap(b, sf, tf, opt.Student, S, opt.Map)
	}
	if head != HeadStudent {
		bm := bankMap(b, tf[1], tf[2], opt.Bank, S, opt.Map.Sigma)
		if head == HeadFused {
			bm = fuseMaps(b, m, bm, opt.Norms)
		}
		m = bm
	}
	amap := b.Identity(b.Op("Unsqueeze", []string{m, b.ConstInt64("axis1", []int64{1}, []int64{1})}, nil), MapName)
	score := b.Identity(reduceMax(b, m), ScoreName)
	b.Output(amap, onnx.TensorProto_FLOAT, "N", 1, S, S)
	b.Output(score, onnx.TensorProto_FLOAT, "N")
	out, err := b.Marshal()
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return out, nil
}

// weights hands out the student's variables, checking their shapes.
type weights struct {
	m    map[string]student.Tensor
	used map[string]bool
	err  error
}

func (w *weights) get(path string, dims ...int) []float32 {
	t, ok := w.m[path]
	if !ok {
		if w.err == nil {
			w.err = fmt.Errorf("export: student weight %q missing", path)
		}
		return make([]float32, prod(dims))
	}
	w.used[path] = true
	if fmt.Sprint(t.Dims) != fmt.Sprint(dims) || len(t.Data) != prod(dims) {
		if w.err == nil {
			w.err = fmt.Errorf("export: student weight %q has shape %v (%d values), want %v", path, t.Dims, len(t.Data), dims)
		}
		return make([]float32, prod(dims))
	}
	return t.Data
}

// transposed returns the variable at path, of shape dims, with its axes
// permuted by perm (onnxb.Transpose).
func (w *weights) transposed(path string, dims []int, perm ...int) []float32 {
	t, err := onnxb.Transpose(w.get(path, dims...), dims, perm...)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("export: student weight %q: %w", path, err)
	}
	if err != nil {
		return make([]float32, prod(dims))
	}
	return t
}

func prod(d []int) int {
	n := 1
	for _, v := range d {
		n *= v
	}
	return n
}

// conv adds an ONNX Conv with the GoMLX kernel [k,k,Cin,Cout] at
// scope+"/kernel" transposed to [Cout,Cin,k,k], bias scope+"/bias",
// symmetric padding k/2.
func conv(b *onnxb.Builder, w *weights, scope, x string, cin, cout, k, stride int) string {
	oihw := w.transposed(scope+"/kernel", []int{k, k, cin, cout}, 3, 2, 0, 1)
	wt := b.Const("student"+scope+"/W", []int64{int64(cout), int64(cin), int64(k), int64(k)}, oihw)
	bias := b.Const("student"+scope+"/B", []int64{int64(cout)}, w.get(scope+"/bias", cout))
	p := k / 2
	return b.Op("Conv", []string{x, wt, bias}, onnxb.Attrs{
		"kernel_shape": []int64{int64(k), int64(k)},
		"strides":      []int64{int64(stride), int64(stride)},
		"pads":         []int64{int64(p), int64(p), int64(p), int64(p)},
	})
}

// dense1x1 adds a Dense layer (weights [Cin,Cout], bias) acting on
// [N,C,1,1] as a 1×1 Conv.
func dense1x1(b *onnxb.Builder, w *weights, scope, x string, cin, cout int) string {
	oi := w.transposed(scope+"/weights", []int{cin, cout}, 1, 0)
	wt := b.Const("student"+scope+"/W", []int64{int64(cout), int64(cin), 1, 1}, oi)
	bias := b.Const("student"+scope+"/B", []int64{int64(cout)}, w.get(scope+"/bias", cout))
	return b.Op("Conv", []string{x, wt, bias}, onnxb.Attrs{"kernel_shape": []int64{1, 1}})
}

func relu(b *onnxb.Builder, x string) string { return b.Op("Relu", []string{x}, nil) }

// buildStudent mirrors student.Forward in NCHW.
func buildStudent(b *onnxb.Builder, w *weights, cfg student.Config, img string) [3]string {
	stem, widths := cfg.StageWidths()
	h := b.Op("Sub", []string{b.Op("Mul", []string{img, b.Scalar("two", 2)}, nil), b.Scalar("one", 1)}, nil)
	h = relu(b, conv(b, w, "/stem", h, 3, stem, 3, 2))
	in := stem
	var out [3]string
	for s := 0; s < 3; s++ {
		st := fmt.Sprintf("/stage%d", s)
		h = relu(b, conv(b, w, st+"/down", h, in, widths[s], 3, 2))
		in = widths[s]
		for k := 0; k < cfg.Depth; k++ {
			bl := fmt.Sprintf("%s/block%d", st, k)
			y := relu(b, conv(b, w, bl+"/conv1", h, in, in, 3, 1))
			y = conv(b, w, bl+"/conv2", y, in, in, 3, 1)
			sum := b.Op("Add", []string{h, y}, nil)
			if cfg.SEReduction > 0 {
				hid := nn.SEHidden(in, cfg.SEReduction)
				sq := b.Op("GlobalAveragePool", []string{sum}, nil)
				sq = relu(b, dense1x1(b, w, bl+"/se/fc1", sq, in, hid))
				sq = b.Op("Sigmoid", []string{dense1x1(b, w, bl+"/se/fc2", sq, hid, in)}, nil)
				sum = b.Op("Mul", []string{sum, sq}, nil)
			}
			h = relu(b, sum)
		}
		out[s] = conv(b, w, fmt.Sprintf("/head%d", s), h, in, cfg.Channels[s], 1, 1)
	}
	return out
}

// normalize divides x [N,C,h,w] by sqrt(Σ_c x² + NormEps).
func normalize(b *onnxb.Builder, x string) string {
	ss := reduce(b, "ReduceSumSquare", x, []int64{1}, 1)
	n := b.Op("Sqrt", []string{b.Op("Add", []string{ss, b.Scalar("norm_eps", nn.NormEps)}, nil)}, nil)
	return b.Op("Div", []string{x, n}, nil)
}

// reduceMax is the max over axes 1 and 2 of [N,S,S].
func reduceMax(b *onnxb.Builder, x string) string {
	return reduce(b, "ReduceMax", x, []int64{1, 2}, 0)
}

// reduce adds a Reduce* node; axes are an attribute before opset 18 (13
// for ReduceSum) and an input from then on.
func reduce(b *onnxb.Builder, op, x string, axes []int64, keepdims int) string {
	if b.Opset() >= 18 || op == "ReduceSum" {
		return b.Op(op, []string{x, b.ConstInt64("axes", []int64{int64(len(axes))}, axes)}, onnxb.Attrs{"keepdims": keepdims})
	}
	return b.Op(op, []string{x}, onnxb.Attrs{"axes": axes, "keepdims": keepdims})
}

// separable computes rows·x·colsᵀ for x [N,h,w] (or [N,C,h,w], each
// channel's map) with two MatMuls (columns first, as nn.Separable does).
func separable(b *onnxb.Builder, x string, rows, cols [][]float64, name string) string {
	ct := make([][]float64, len(cols[0])) // colsᵀ [w, W]
	for i := range ct {
		ct[i] = make([]float64, len(cols))
		for j := range cols {
			ct[i][j] = cols[j][i]
		}
	}
	c := b.Const(name+"_colsT", []int64{int64(len(ct)), int64(len(ct[0]))}, nn.Flat32(ct))
	r := b.Const(name+"_rows", []int64{int64(len(rows)), int64(len(rows[0]))}, nn.Flat32(rows))
	y := b.Op("MatMul", []string{x, c}, nil)
	return b.Op("MatMul", []string{r, y}, nil)
}

// anomalyMap mirrors student.AnomalyMap: [N,S,S].
func anomalyMap(b *onnxb.Builder, s, t [3]string, cfg student.Config, S int, mc student.MapConfig) string {
	var fused string
	w := mc.ScaleWeights()
	for i := range s {
		if w[i] == 0 {
			continue
		}
		h := S / student.Strides[i]
		si, ti := s[i], t[i]
		if r := mc.PoolRadius(i); r > 0 {
			box := nn.BoxMatrix(h, r)
			name := fmt.Sprintf("pool_s%d", student.Strides[i])
			si, ti = separable(b, si, box, box, name), separable(b, ti, box, box, name)
		}
		cos := reduce(b, "ReduceSum", b.Op("Mul", []string{normalize(b, si), normalize(b, ti)}, nil), []int64{1}, 0)
		d := b.Op("Sub", []string{b.Scalar("one_d", 1), cos}, nil)
		up := nn.BilinearMatrix(h, S)
		d = separable(b, d, up, up, fmt.Sprintf("upsample_s%d", student.Strides[i]))
		if mc.Fuse != student.FuseProduct && w[i] != 1 {
			d = b.Op("Mul", []string{d, b.Scalar("scale_weight", float32(w[i]))}, nil)
		}
		switch {
		case fused == "":
			fused = d
		case mc.Fuse == student.FuseProduct:
			fused = b.Op("Mul", []string{fused, d}, nil)
		default:
			fused = b.Op("Add", []string{fused, d}, nil)
		}
	}
	if mc.Sigma <= 0 {
		return fused
	}
	g := nn.GaussianMatrix(S, mc.Sigma)
	return separable(b, fused, g, g, "blur")
}
