// Package teacher imports the frozen ImageNet backbone of Multi-AD: a
// quantized TFLite classifier (MobileNetV2 or V3) turned into a float
// Program, exported as an ONNX graph with the image input and the logits
// and stride-4/8/16 feature outputs the rest of multiad relies on. Any ONNX
// backbone can also be plugged in by naming its feature outputs.
package teacher

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"github.com/multiad/multiad/model/onnxb"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/tflite"
	"google.golang.org/protobuf/proto"
)

// Names of the teacher graph's input and outputs. The scoring export
// depends on them: keep them stable.
const (
	InputImage   = "image"  // [N, 3, H, W] float32 RGB in [0, 1]; H, W divisible by 32
	OutputLogits = "logits" // [N, classes], before any softmax
)

// FeatureOutputs are the names of the feature-map outputs, at strides
// FeatureStrides: [N, C, H/4, W/4], [N, C, H/8, W/8], [N, C, H/16, W/16].
var FeatureOutputs = [3]string{"feat_s4", "feat_s8", "feat_s16"}

// FeatureStrides are the strides of FeatureOutputs.
var FeatureStrides = [3]int{4, 8, 16}

// Teacher is an imported backbone.
type Teacher struct {
	// Program is the float program of a TFLite import (nil for ImportONNX).
	Program *Program
	// Features are the names, in the source model, of the three feature maps.
	Features [3]string
	// Source is the path the teacher was imported from.
	Source string

	channels [3]int
	onnx     *onnxb.Builder // ImportONNX: the rewritten graph
}

// ImportOptions configure Import.
type ImportOptions struct {
	// Features names the three TFLite tensors used as stride-4, -8 and -16
	// feature maps (a tensor named "a;b;c" is also found as "b"). Empty selects, at each stride, the output of the last
	// residual ADD, or when there is none the last narrowest tensor: for
	// MobileNetV2 MobilenetV2/expanded_conv_2/add, expanded_conv_5/add and
	// expanded_conv_12/add (24, 32, 96 channels); for MobileNetV3-small
	// MobilenetV3/expanded_conv/project/add_fold, expanded_conv_2/add and
	// expanded_conv_7/add (16, 24, 48 channels).
	Features []string
	// ClampLogits keeps the clamp of the logits to their quantized range.
	// By default it is dropped, so that logits beyond the range keep their
	// order instead of tying (TFLite saturates them at 255).
	ClampLogits bool
}

// Import reads a TFLite classifier and converts it to a float program.
func Import(tflitePath string, opts ImportOptions) (*Teacher, error) {
	m, err := tflite.ReadFile(tflitePath)
	if err != nil {
		return nil, err
	}
	p, err := FromTFLite(m)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, tflitePath)
	}
	if !opts.ClampLogits {
		unclampLogits(p)
	}
	t := &Teacher{Program: p, Source: tflitePath}
	if len(opts.Features) == 0 {
		if t.Features, err = defaultFeatures(p); err != nil {
			return nil, err
		}
	} else if len(opts.Features) != 3 {
		return nil, fmt.Errorf("teacher: %d feature tensors given, want 3 (strides 4, 8, 16)", len(opts.Features))
	} else {
		copy(t.Features[:], opts.Features)
	}
	for k, f := range t.Features {
		s, ok := p.Shape(f)
		if !ok {
			if full, found := p.resolve(f); found {
				t.Features[k], f = full, full
				s, ok = p.Shape(f)
			}
		}
		if !ok {
			return nil, fmt.Errorf("teacher: feature tensor %q is not computed by %s", f, tflitePath)
		}
		if len(s) != 4 || s[2]*FeatureStrides[k] != p.InputSize[0] || s[3]*FeatureStrides[k] != p.InputSize[1] {
			return nil, fmt.Errorf("teacher: feature tensor %q has shape %v (NCHW) for a %dx%d input, want stride %d",
				f, s, p.InputSize[0], p.InputSize[1], FeatureStrides[k])
		}
		t.channels[k] = s[1]
	}
	return t, nil
}

// resolve finds the value one of whose ';'-separated names is name (some
// converters name a fused op's output after every layer it replaces); it
// must be unique.
func (p *Program) resolve(name string) (string, bool) {
	full := ""
	for _, op := range p.Ops {
		for _, part := range strings.Split(op.Output, ";") {
			if part == name {
				if full != "" && full != op.Output {
					return "", false
				}
				full = op.Output
			}
		}
	}
	return full, full != ""
}

// unclampLogits removes the clamp from the ops that compute the logits.
func unclampLogits(p *Program) {
	v := p.Logits
	for {
		op := p.producer(v)
		if op == nil {
			return
		}
		op.Clamp = false
		if op.Kind != KindReshape && op.Kind != KindIdentity {
			return
		}
		v = op.Inputs[0]
	}
}

// defaultFeatures picks, at strides 4, 8 and 16, the last residual ADD
// output, else the last of the narrowest rank-4 outputs.
func defaultFeatures(p *Program) ([3]string, error) {
	var out [3]string
	for k, s := range FeatureStrides {
		h, w := p.InputSize[0]/s, p.InputSize[1]/s
		lastAdd, narrow, minC := "", "", int(^uint(0)>>1)
		for _, op := range p.Ops {
			sh := op.OutShape
			if len(sh) != 4 || sh[2] != h || sh[3] != w {
				continue
			}
			if op.Kind == KindAdd && len(op.Inputs) == 2 && p.Consts[op.Inputs[1]].Data == nil && p.Consts[op.Inputs[0]].Data == nil {
				lastAdd = op.Output
			}
			if sh[1] <= minC {
				minC, narrow = sh[1], op.Output
			}
		}
		switch {
		case lastAdd != "":
			out[k] = lastAdd
		case narrow != "":
			out[k] = narrow
		default:
			return out, fmt.Errorf("teacher: no %dx%d (stride %d) tensor in the model; name the features in ImportOptions", h, w, s)
		}
	}
	return out, nil
}

// FeatureChannels returns the channel counts of feat_s4, feat_s8 and feat_s16.
func (t *Teacher) FeatureChannels() [3]int { return t.channels }

// ONNX returns the teacher as a serialized ONNX model with input "image"
// [N, 3, H, W] (RGB in [0, 1], H and W divisible by 32) and outputs
// "logits", "feat_s4", "feat_s8" and "feat_s16".
func (t *Teacher) ONNX() ([]byte, error) {
	b, err := t.graph()
	if err != nil {
		return nil, err
	}
	return b.Marshal()
}

// FeaturesONNX is ONNX without the classifier head: the graph stops at the
// deepest feature map and has only the feat_s4, feat_s8 and feat_s16
// outputs (for an ImportONNX teacher it is ONNX without "logits").
func (t *Teacher) FeaturesONNX() ([]byte, error) {
	b := onnxb.New()
	if t.Program == nil {
		g, err := t.graph()
		if err != nil {
			return nil, err
		}
		b = onnxb.NewOpset(g.Opset())
	}
	b.SetName("multiad_teacher_features")
	img := b.Input(InputImage, onnx.TensorProto_FLOAT, "N", 3, "H", "W")
	feats, err := t.BuildFeatures(b, img, "")
	if err != nil {
		return nil, err
	}
	for k, f := range feats {
		s := FeatureStrides[k]
		b.Output(b.Identity(f, FeatureOutputs[k]), onnx.TensorProto_FLOAT, "N", t.channels[k], fmt.Sprintf("H/%d", s), fmt.Sprintf("W/%d", s))
	}
	return b.Marshal()
}

// graph returns a fresh builder holding the teacher graph.
func (t *Teacher) graph() (*onnxb.Builder, error) {
	if t.Program != nil {
		return buildProgramGraph(t.Program, t.Features, t.channels, false)
	}
	if t.onnx == nil {
		return nil, errors.New("teacher: empty teacher")
	}
	data, err := t.onnx.Marshal()
	if err != nil {
		return nil, err
	}
	return onnxb.Load(data)
}

// Build embeds the teacher graph into b, reading image (a value of b of
// shape [N, 3, H, W] in [0, 1]) and prefixing the teacher's value names with
// prefix. It returns the names in b of the feature maps (strides 4, 8, 16)
// and of the logits.
func (t *Teacher) Build(b *onnxb.Builder, image, prefix string) (feats [3]string, logits string, err error) {
	g, err := t.graph()
	if err != nil {
		return feats, "", err
	}
	outs, err := b.Embed(g, prefix, map[string]string{InputImage: image})
	if err != nil {
		return feats, "", err
	}
	for k, f := range FeatureOutputs {
		feats[k] = outs[f]
	}
	return feats, outs[OutputLogits], nil
}

// BuildFeatures is Build for the feature maps alone: the layers after the
// deepest feature map (the classifier head) are left out, which saves most
// of MobileNetV2's last stage. For an ImportONNX teacher it is Build, and
// ONNX Runtime skips what the outputs don't need.
func (t *Teacher) BuildFeatures(b *onnxb.Builder, image, prefix string) (feats [3]string, err error) {
	if t.Program == nil {
		feats, _, err = t.Build(b, image, prefix)
		return feats, err
	}
	p, err := t.Program.Prune(t.Features[:]...)
	if err != nil {
		return feats, err
	}
	names, err := p.Build(b, image, prefix)
	if err != nil {
		return feats, err
	}
	for k, f := range t.Features {
		feats[k] = names[f]
	}
	return feats, nil
}

// ONNXOptions configure ImportONNX.
type ONNXOptions struct {
	// Mean and Std, when Std is non-zero, normalise the [0, 1] image per
	// channel, (x − mean)/std, before the backbone (e.g. ImageNet's
	// {0.485, 0.456, 0.406} and {0.229, 0.224, 0.225} for torchvision).
	Mean, Std [3]float32
	// Logits names the output aliased as "logits"; empty takes the model's
	// first graph output that is not a feature.
	Logits string
}

// ImportONNX plugs an ONNX backbone (e.g. a torchvision WideResNet-50
// export) in as teacher. featureOutputs name three values of the graph
// (any node outputs, not only graph outputs) at strides 4, 8 and 16; they
// are aliased to feat_s4, feat_s8 and feat_s16, the single image input is
// renamed "image", and the first other graph output becomes "logits". The
// model must take NCHW RGB images (normalised as opts says). Channel counts
// are read from the graph's shape annotations or found by running the
// model once on a small image in ONNX Runtime.
func ImportONNX(path string, featureOutputs []string, opts ...ONNXOptions) (*Teacher, error) {
	var o ONNXOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if len(featureOutputs) != 3 {
		return nil, fmt.Errorf("teacher: %d feature outputs given, want 3 (strides 4, 8, 16)", len(featureOutputs))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	if len(data) > onnxb.MaxModelSize {
		return nil, fmt.Errorf("teacher: %s is %d bytes, limit %d", path, len(data), onnxb.MaxModelSize)
	}
	model := &onnx.ModelProto{}
	if err := proto.Unmarshal(data, model); err != nil {
		return nil, fmt.Errorf("teacher: %s is not an ONNX model: %w", path, err)
	}
	b, err := onnxb.FromModel(model)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	ins := b.Inputs()
	if len(ins) != 1 {
		return nil, fmt.Errorf("teacher: %s has inputs %v, want one image input", path, ins)
	}
	for _, f := range append(append([]string(nil), featureOutputs...), o.Logits) {
		if f == ins[0] {
			return nil, fmt.Errorf("teacher: %s: %q is the input, not a feature", path, f)
		}
	}
	for _, f := range featureOutputs {
		if !b.Has(f) {
			return nil, fmt.Errorf("teacher: %s has no value %q (feature outputs must name node outputs)", path, f)
		}
	}
	logits := o.Logits
	if logits == "" {
		for _, out := range b.Outputs() {
			if out != featureOutputs[0] && out != featureOutputs[1] && out != featureOutputs[2] {
				logits = out
				break
			}
		}
	}
	if logits == ins[0] {
		logits = ""
	}
	if logits != "" && !b.Has(logits) {
		return nil, fmt.Errorf("teacher: %s has no value %q for the logits", path, logits)
	}
	// The backbone's input becomes an inner value fed from "image" (through
	// the normalisation, if any).
	inner := b.Unique("teacher_input")
	if err := b.RenameValue(ins[0], inner); err != nil {
		return nil, err
	}
	g := model.Graph
	if b.Has(InputImage) {
		return nil, fmt.Errorf("teacher: %s already has a value named %q", path, InputImage)
	}
	var prelude []*onnx.NodeProto
	for _, vi := range g.Input {
		if vi.Name == inner {
			vi.Name = InputImage
		}
	}
	if o.Std != [3]float32{} {
		mean := b.Const("teacher_mean", []int64{1, 3, 1, 1}, o.Mean[:])
		std := b.Const("teacher_std", []int64{1, 3, 1, 1}, o.Std[:])
		c := b.Unique("teacher_centered")
		prelude = append(prelude,
			&onnx.NodeProto{Name: "teacher_center", OpType: "Sub", Input: []string{InputImage, mean}, Output: []string{c}},
			&onnx.NodeProto{Name: "teacher_scale", OpType: "Div", Input: []string{c, std}, Output: []string{inner}})
	} else {
		prelude = append(prelude, &onnx.NodeProto{Name: "teacher_input", OpType: "Identity", Input: []string{InputImage}, Output: []string{inner}})
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	g.Node = append(prelude, g.Node...)
	g.Output = nil
	// Rebuild the bookkeeping from the rewritten graph.
	nb2, err := onnxb.FromModel(model)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	// Alias the chosen values to the stable output names, first moving
	// aside any other value that already has one of those names.
	var srcs, dsts []string
	if logits != "" {
		srcs, dsts = append(srcs, logits), append(dsts, OutputLogits)
	}
	srcs, dsts = append(srcs, featureOutputs...), append(dsts, FeatureOutputs[:]...)
	for i, dst := range dsts {
		if srcs[i] != dst && nb2.Has(dst) {
			moved := nb2.Unique(dst + "_orig")
			if err := nb2.RenameValue(dst, moved); err != nil {
				return nil, err
			}
			for j := range srcs {
				if srcs[j] == dst {
					srcs[j] = moved
				}
			}
		}
	}
	for i, dst := range dsts {
		if srcs[i] != dst {
			nb2.Identity(srcs[i], dst)
		}
		nb2.Output(dst, onnx.TensorProto_FLOAT)
	}
	if err := nb2.Err(); err != nil {
		return nil, err
	}
	t := &Teacher{Source: path, onnx: nb2}
	copy(t.Features[:], featureOutputs)
	if err := t.probeChannels(); err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return t, nil
}

// probeChannels runs the graph once on a 64×64 (or the input's fixed size)
// zero image to learn the feature channel counts.
func (t *Teacher) probeChannels() error {
	data, err := t.onnx.Marshal()
	if err != nil {
		return err
	}
	h, w := 64, 64
	for _, vi := range t.onnx.Graph().Input {
		if vi.Name != InputImage {
			continue
		}
		if tt := vi.GetType().GetTensorType(); tt != nil && tt.Shape != nil && len(tt.Shape.Dim) == 4 {
			if v := tt.Shape.Dim[2].GetDimValue(); v > 0 {
				h = int(v)
			}
			if v := tt.Shape.Dim[3].GetDimValue(); v > 0 {
				w = int(v)
			}
		}
	}
	sess, err := ort.NewSession(data, []string{InputImage}, FeatureOutputs[:], ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		return err
	}
	defer sess.Close()
	outs, err := sess.Run(ort.Tensor{Shape: []int64{1, 3, int64(h), int64(w)}, Data: make([]float32, 3*h*w)})
	if err != nil {
		return err
	}
	for k, o := range outs {
		if len(o.Shape) != 4 {
			return fmt.Errorf("teacher: feature %s has shape %v, want [N, C, H, W]", t.Features[k], o.Shape)
		}
		if o.Shape[2]*int64(FeatureStrides[k]) != int64(h) || o.Shape[3]*int64(FeatureStrides[k]) != int64(w) {
			return fmt.Errorf("teacher: feature %s has shape %v for a %dx%d image, want stride %d", t.Features[k], o.Shape, h, w, FeatureStrides[k])
		}
		t.channels[k] = int(o.Shape[1])
	}
	return nil
}

// Labels reads a class-name file, one name per line, optionally written
// "index:name" (as labels.txt of the TFLite models, whose index 0 is
// "background").
func Labels(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("teacher: %w", err)
	}
	var labels []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		if i := strings.IndexByte(s, ':'); i > 0 {
			if n, err := strconv.Atoi(s[:i]); err == nil {
				if n != len(labels) {
					return nil, fmt.Errorf("teacher: %s line %d: index %d, want %d", path, line, n, len(labels))
				}
				s = strings.TrimSpace(s[i+1:])
			}
		}
		labels = append(labels, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("teacher: %s: %w", path, err)
	}
	if len(labels) == 0 {
		return nil, fmt.Errorf("teacher: %s has no labels", path)
	}
	return labels, nil
}

// Prediction is one class and its logit.
type Prediction struct {
	Class int
	Score float32
}

// Classify runs a teacher session (an ONNX teacher graph with a "logits"
// output) on a batch of images [N, 3, H, W] in [0, 1] (224×224 for the
// ImageNet models) and returns each image's top five classes, best first.
func Classify(sess *ort.Session, images ort.Tensor) ([][]Prediction, error) {
	idx := -1
	for i, n := range sess.OutputNames() {
		if n == OutputLogits {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("teacher: session has no %q output (outputs %v)", OutputLogits, sess.OutputNames())
	}
	outs, err := sess.Run(images)
	if err != nil {
		return nil, err
	}
	l := outs[idx]
	if len(l.Shape) != 2 || l.Shape[0] <= 0 {
		return nil, fmt.Errorf("teacher: logits have shape %v, want [N, classes]", l.Shape)
	}
	n, c := int(l.Shape[0]), int(l.Shape[1])
	res := make([][]Prediction, n)
	for i := range res {
		res[i] = TopK(l.Data[i*c:(i+1)*c], 5)
	}
	return res, nil
}

// TopK returns the k largest scores with their indices, best first (ties
// by lower index).
func TopK(scores []float32, k int) []Prediction {
	p := make([]Prediction, len(scores))
	for i, s := range scores {
		p[i] = Prediction{Class: i, Score: s}
	}
	sort.SliceStable(p, func(a, b int) bool { return p[a].Score > p[b].Score })
	if k < len(p) {
		p = p[:k]
	}
	return p
}
