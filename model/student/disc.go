package student

import (
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/model/nn"
)

// DiscWidth is the channel count of the discriminator's convolutions.
const DiscWidth = 64

// Discriminator scores stride-16 feature maps f [N, h, w, C] (L2-normalised
// over channels by the caller): two 3×3 convolutions (the second with
// stride 2), each followed by instance normalisation and leaky ReLU (0.2),
// a global average pool and a dense logit. It returns logits [N] (high =
// teacher, "real"). Scopes "conv0", "conv1", "logit".
func Discriminator(scope *model.Scope, f *Node) *Node {
	h := f
	for i, stride := range []int{1, 2} {
		h = nn.ConvLayer(scope.At("conv%d", i), h, DiscWidth, 3, stride, true, 1)
		h = nn.LeakyRelu(instanceNorm(h), 0.2)
	}
	logit := nn.Dense(scope.At("logit"), nn.GlobalAvgPool(h), 1, 1)
	return Reshape(logit, logit.Shape().Dimensions[0])
}

// instanceNorm normalises each channel of each sample over height and width.
func instanceNorm(x *Node) *Node {
	mean := ReduceMean(x, 1, 2)
	mean = InsertAxes(mean, 1, 1)
	c := Sub(x, mean)
	v := InsertAxes(ReduceMean(Square(c), 1, 2), 1, 1)
	return Div(c, Sqrt(AddScalar(v, 1e-5)))
}
