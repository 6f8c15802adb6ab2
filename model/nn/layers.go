package nn

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
)

// SeedParam is the store parameter (int) that seeds variable
// initialisation; every variable's values depend only on it and the
// variable's full path, so initialisation is reproducible.
const SeedParam = "nn_seed"

// DTypeParam is the store parameter (string, "float32" by default or
// "float64") that sets the dtype of new variables; float64 serves gradient
// checks.
const DTypeParam = "nn_dtype"

// Normal returns a variable of the given shape, created (if new) with values
// drawn from N(0, std²) by a generator seeded from the store's SeedParam and
// the variable path.
func Normal(scope *model.Scope, name string, std float64, dims ...int) *model.Variable {
	return initVar(scope, name, dims, func(r *rand.Rand, out []float32) {
		for i := range out {
			out[i] = float32(r.NormFloat64() * std)
		}
	})
}

// Constant returns a variable of the given shape, created (if new) filled
// with value.
func Constant(scope *model.Scope, name string, value float64, dims ...int) *model.Variable {
	return initVar(scope, name, dims, func(_ *rand.Rand, out []float32) {
		for i := range out {
			out[i] = float32(value)
		}
	})
}

func initVar(scope *model.Scope, name string, dims []int, fill func(*rand.Rand, []float32)) *model.Variable {
	if v := scope.GetVariable(name); v != nil {
		return v
	}
	size := 1
	for _, d := range dims {
		size *= d
	}
	seed := model.GetRootParamOr(scope.Store(), SeedParam, 0)
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s", scope.Scope(), name)
	r := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
	data := make([]float32, size)
	fill(r, data)
	if model.GetRootParamOr(scope.Store(), DTypeParam, "float32") == "float64" {
		d64 := make([]float64, size)
		for i, v := range data {
			d64[i] = float64(v)
		}
		return scope.VariableWithValue(name, tensors.FromFlatDataAndDimensions(d64, dims...))
	}
	return scope.VariableWithValue(name, tensors.FromFlatDataAndDimensions(data, dims...))
}

// ConvLayer is a k×k convolution with cout filters (He-normal init scaled by
// gain, zero bias), stride and symmetric padding k/2 (ONNX pads
// [k/2]*4). Variables: "kernel" [k,k,Cin,Cout] and, if bias, "bias" [Cout].
func ConvLayer(scope *model.Scope, x *Node, cout, k, stride int, bias bool, gain float64) *Node {
	cin := x.Shape().Dimensions[3]
	std := gain * math.Sqrt(2/float64(k*k*cin))
	w := Normal(scope, "kernel", std, k, k, cin, cout).NodeValue(x.Graph())
	y := Conv2D(x, w, stride, Symmetric(k/2))
	if bias {
		y = AddBias(y, Constant(scope, "bias", 0, cout).NodeValue(x.Graph()))
	}
	return y
}

// Dense is x·W + b over the last axis (He-normal init scaled by gain).
// Variables: "weights" [Cin, Cout], "bias" [Cout].
func Dense(scope *model.Scope, x *Node, cout int, gain float64) *Node {
	d := x.Shape().Dimensions
	cin := d[len(d)-1]
	w := Normal(scope, "weights", gain*math.Sqrt(2/float64(cin)), cin, cout).NodeValue(x.Graph())
	b := Constant(scope, "bias", 0, cout).NodeValue(x.Graph())
	flat := Reshape(x, x.Shape().Size()/cin, cin)
	y := AddBias(MatMul(flat, w), b)
	out := append(append([]int{}, d[:len(d)-1]...), cout)
	return Reshape(y, out...)
}

// SEHidden is the hidden width of a squeeze-and-excitation block on c
// channels with the given reduction ratio (at least 4).
func SEHidden(c, reduction int) int {
	if reduction < 1 {
		reduction = 1
	}
	h := c / reduction
	if h < 4 {
		h = 4
	}
	return h
}

// SqueezeExcite rescales the channels of an NHWC map by
// sigmoid(FC(ReLU(FC(global average pool)))). Sub-scopes "fc1" and "fc2".
// ONNX: GlobalAveragePool → Gemm/MatMul+Add → Relu → MatMul+Add → Sigmoid → Mul.
func SqueezeExcite(scope *model.Scope, x *Node, reduction int) *Node {
	c := x.Shape().Dimensions[3]
	s := GlobalAvgPool(x)
	s = Relu(Dense(scope.At("fc1"), s, SEHidden(c, reduction), 1))
	s = Sigmoid(Dense(scope.At("fc2"), s, c, 1))
	return Mul(x, Reshape(s, s.Shape().Dimensions[0], 1, 1, c))
}
