package tflite

import "fmt"

// BuiltinOperator is a TFLite builtin operator code.
type BuiltinOperator int32

// Builtin operators used by convolutional classifiers (the schema defines
// many more; String names them all up to BATCH_MATMUL).
const (
	OpAdd           BuiltinOperator = 0
	OpAveragePool2D BuiltinOperator = 1
	OpConcatenation BuiltinOperator = 2
	OpConv2D        BuiltinOperator = 3
	OpDepthwiseConv BuiltinOperator = 4
	OpDequantize    BuiltinOperator = 6
	OpFullyConnect  BuiltinOperator = 9
	OpLogistic      BuiltinOperator = 14
	OpMaxPool2D     BuiltinOperator = 17
	OpMul           BuiltinOperator = 18
	OpRelu          BuiltinOperator = 19
	OpReluN1To1     BuiltinOperator = 20
	OpRelu6         BuiltinOperator = 21
	OpReshape       BuiltinOperator = 22
	OpSoftmax       BuiltinOperator = 25
	OpCustom        BuiltinOperator = 32
	OpPad           BuiltinOperator = 34
	OpMean          BuiltinOperator = 40
	OpSub           BuiltinOperator = 41
	OpDiv           BuiltinOperator = 42
	OpSqueeze       BuiltinOperator = 43
	OpQuantize      BuiltinOperator = 114
	OpHardSwish     BuiltinOperator = 117
)

var opNames = []string{
	"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE",
	"EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP", "L2_NORMALIZATION", "L2_POOL_2D",
	"LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC", "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU",
	"RELU_N1_TO_1", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH",
	"CONCAT_EMBEDDINGS", "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD",
	"UNIDIRECTIONAL_SEQUENCE_RNN", "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB",
	"DIV", "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN", "EXP",
	"TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST", "PRELU", "MAXIMUM",
	"ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL", "LESS_EQUAL", "SELECT", "SLICE",
	"SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE", "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT",
	"RSQRT", "SHAPE", "POW", "ARG_MIN", "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR",
	"ONE_HOT", "LOGICAL_AND", "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE",
	"ZEROS_LIKE", "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
	"MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS", "WHERE", "RANK",
	"ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG", "ROUND", "HARD_SWISH", "IF", "WHILE",
	"NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5", "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM",
	"BATCH_MATMUL",
}

// String returns the operator's schema name, e.g. "CONV_2D".
func (o BuiltinOperator) String() string {
	if o >= 0 && int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("BUILTIN_OPERATOR_%d", int32(o))
}

// Padding is a convolution or pooling padding mode.
type Padding int8

// Padding modes.
const (
	PaddingSame  Padding = 0
	PaddingValid Padding = 1
)

// String returns "SAME" or "VALID".
func (p Padding) String() string {
	switch p {
	case PaddingSame:
		return "SAME"
	case PaddingValid:
		return "VALID"
	}
	return fmt.Sprintf("Padding(%d)", int8(p))
}

// Activation is a fused activation function.
type Activation int8

// Fused activations.
const (
	ActNone      Activation = 0
	ActRelu      Activation = 1
	ActReluN1To1 Activation = 2
	ActRelu6     Activation = 3
	ActTanh      Activation = 4
	ActSignBit   Activation = 5
)

// String returns the activation's schema name.
func (a Activation) String() string {
	switch a {
	case ActNone:
		return "NONE"
	case ActRelu:
		return "RELU"
	case ActReluN1To1:
		return "RELU_N1_TO_1"
	case ActRelu6:
		return "RELU6"
	case ActTanh:
		return "TANH"
	case ActSignBit:
		return "SIGN_BIT"
	}
	return fmt.Sprintf("Activation(%d)", int8(a))
}

// Conv2DOptions configure CONV_2D.
type Conv2DOptions struct {
	Padding              Padding
	StrideW, StrideH     int32
	Activation           Activation
	DilationW, DilationH int32
}

// DepthwiseConv2DOptions configure DEPTHWISE_CONV_2D.
type DepthwiseConv2DOptions struct {
	Padding              Padding
	StrideW, StrideH     int32
	DepthMultiplier      int32
	Activation           Activation
	DilationW, DilationH int32
}

// Pool2DOptions configure AVERAGE_POOL_2D and MAX_POOL_2D.
type Pool2DOptions struct {
	Padding                   Padding
	StrideW, StrideH          int32
	FilterWidth, FilterHeight int32
	Activation                Activation
}

// FullyConnectedOptions configure FULLY_CONNECTED.
type FullyConnectedOptions struct {
	Activation    Activation
	WeightsFormat int8
	KeepNumDims   bool
}

// SoftmaxOptions configure SOFTMAX.
type SoftmaxOptions struct{ Beta float32 }

// ConcatenationOptions configure CONCATENATION.
type ConcatenationOptions struct {
	Axis       int32
	Activation Activation
}

// ActivationOptions configure ADD, SUB, MUL and DIV (a fused activation).
type ActivationOptions struct{ Activation Activation }

// ReshapeOptions configure RESHAPE (newer files give the shape as a second input instead).
type ReshapeOptions struct{ NewShape []int32 }

// ReducerOptions configure MEAN, SUM and the REDUCE_* operators.
type ReducerOptions struct{ KeepDims bool }

// SqueezeOptions configure SQUEEZE.
type SqueezeOptions struct{ SqueezeDims []int32 }

// BuiltinOptions union tags decoded by this package.
const (
	optConv2D         = 1
	optDepthwise      = 2
	optPool2D         = 5
	optFullyConnected = 8
	optSoftmax        = 9
	optConcatenation  = 10
	optAdd            = 11
	optReshape        = 17
	optMul            = 21
	optReducer        = 27
	optSub            = 28
	optDiv            = 29
	optSqueeze        = 30
)

// parseOptions decodes the builtin options table of union tag typ.
func parseOptions(typ uint8, t table) (any, error) {
	var errs []error
	i8 := func(id int, def int8) int8 { v, err := t.i8(id, def); errs = append(errs, err); return v }
	i32 := func(id int, def int32) int32 { v, err := t.i32(id, def); errs = append(errs, err); return v }
	first := func(v any) (any, error) {
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
		return v, nil
	}
	switch typ {
	case optConv2D:
		return first(&Conv2DOptions{Padding: Padding(i8(0, 0)), StrideW: i32(1, 0), StrideH: i32(2, 0),
			Activation: Activation(i8(3, 0)), DilationW: i32(4, 1), DilationH: i32(5, 1)})
	case optDepthwise:
		return first(&DepthwiseConv2DOptions{Padding: Padding(i8(0, 0)), StrideW: i32(1, 0), StrideH: i32(2, 0),
			DepthMultiplier: i32(3, 0), Activation: Activation(i8(4, 0)), DilationW: i32(5, 1), DilationH: i32(6, 1)})
	case optPool2D:
		return first(&Pool2DOptions{Padding: Padding(i8(0, 0)), StrideW: i32(1, 0), StrideH: i32(2, 0),
			FilterWidth: i32(3, 0), FilterHeight: i32(4, 0), Activation: Activation(i8(5, 0))})
	case optFullyConnected:
		return first(&FullyConnectedOptions{Activation: Activation(i8(0, 0)), WeightsFormat: i8(1, 0), KeepNumDims: i8(2, 0) != 0})
	case optSoftmax:
		b, err := t.f32(0, 0)
		return &SoftmaxOptions{Beta: b}, err
	case optConcatenation:
		return first(&ConcatenationOptions{Axis: i32(0, 0), Activation: Activation(i8(1, 0))})
	case optAdd, optMul, optSub, optDiv:
		return first(&ActivationOptions{Activation: Activation(i8(0, 0))})
	case optReshape:
		s, err := t.i32s(0)
		return &ReshapeOptions{NewShape: s}, err
	case optReducer:
		return first(&ReducerOptions{KeepDims: i8(0, 0) != 0})
	case optSqueeze:
		s, err := t.i32s(0)
		return &SqueezeOptions{SqueezeDims: s}, err
	}
	return nil, nil
}
