// Package student defines the Multi-AD student network, its discriminator
// and the anomaly map in GoMLX (NHWC inside the graph).
//
// The student is a plain residual CNN without normalisation layers (so its
// ONNX export is exact and uses only Conv, Add, Relu, GlobalAveragePool,
// MatMul, Sigmoid and Mul). It maps an image in [0, 1] to three feature maps
// with the teacher's channels at strides 4, 8 and 16. Each stage is a
// stride-2 3×3 convolution followed by Depth residual blocks
// (x ← ReLU(SE(x + conv(ReLU(conv(x)))))), and a 1×1 head to the teacher's
// channels.
package student

import (
	"fmt"
	"math"

	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/model/nn"
)

// Config sizes the student.
type Config struct {
	// Width is the channel count of the stride-4 stage; strides 8 and 16
	// use 2× and 4× Width. The stem (stride 2) uses Width/2.
	Width int
	// Depth is the number of residual blocks per stage.
	Depth int
	// SEReduction is the squeeze-and-excitation reduction ratio (hidden
	// width C/SEReduction, at least 4); 0 leaves the SE blocks out (for
	// ablations).
	SEReduction int
	// Channels are the teacher's channels at strides 4, 8 and 16.
	Channels [3]int
}

// DefaultConfig is the student used by default (MobileNetV2 teacher).
func DefaultConfig() Config {
	return Config{Width: 32, Depth: 2, SEReduction: 16, Channels: [3]int{24, 32, 96}}
}

// Strides are the feature strides of the three scales.
var Strides = [3]int{4, 8, 16}

// Tensor is one of the student's variables as a plain float32 tensor (a
// trained student is a map from each variable's path below the student's
// scope, e.g. "/stage0/block1/conv2/kernel", to its Tensor).
type Tensor struct {
	Dims []int
	Data []float32
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Width < 2 || c.Width > 1024 {
		return fmt.Errorf("student: width %d out of range [2, 1024]", c.Width)
	}
	if c.Depth < 0 || c.Depth > 16 {
		return fmt.Errorf("student: depth %d out of range [0, 16]", c.Depth)
	}
	if c.SEReduction < 0 {
		return fmt.Errorf("student: SE reduction %d must be ≥ 1 (or 0: no SE)", c.SEReduction)
	}
	for i, ch := range c.Channels {
		if ch < 1 {
			return fmt.Errorf("student: teacher channels at stride %d = %d", Strides[i], ch)
		}
	}
	return nil
}

// StageWidths returns the channel counts of the stem and the three stages.
func (c Config) StageWidths() (stem int, stages [3]int) {
	stem = c.Width / 2
	if stem < 1 {
		stem = 1
	}
	return stem, [3]int{c.Width, 2 * c.Width, 4 * c.Width}
}

// ResidualGain scales the He init of each block's second convolution, so
// that the residual stream's variance grows slowly without normalisation.
func (c Config) ResidualGain() float64 {
	if c.Depth == 0 {
		return 1
	}
	return 1 / math.Sqrt(float64(3*c.Depth))
}

// Forward runs the student on images x [N, S, S, 3] in [0, 1] (S a multiple
// of 16) and returns its three feature maps [N, S/4, S/4, Channels[0]],
// [N, S/8, …, Channels[1]] and [N, S/16, …, Channels[2]]. Variable scopes:
// "stem", "stage<i>/down", "stage<i>/block<j>/{conv1,conv2,se/fc1,se/fc2}",
// "head<i>" (each conv has "kernel" [k,k,Cin,Cout] and "bias").
func Forward(scope *model.Scope, cfg Config, x *Node) [3]*Node {
	stem, widths := cfg.StageWidths()
	// Centre the input: 2x − 1.
	h := AddScalar(MulScalar(x, 2), -1)
	h = nn.Relu(nn.ConvLayer(scope.At("stem"), h, stem, 3, 2, true, 1))
	var out [3]*Node
	for s := 0; s < 3; s++ {
		st := scope.At("stage%d", s)
		h = nn.Relu(nn.ConvLayer(st.At("down"), h, widths[s], 3, 2, true, 1))
		for b := 0; b < cfg.Depth; b++ {
			bl := st.At("block%d", b)
			y := nn.Relu(nn.ConvLayer(bl.At("conv1"), h, widths[s], 3, 1, true, 1))
			y = nn.ConvLayer(bl.At("conv2"), y, widths[s], 3, 1, true, cfg.ResidualGain())
			h = Add(h, y)
			if cfg.SEReduction > 0 {
				h = nn.SqueezeExcite(bl.At("se"), h, cfg.SEReduction)
			}
			h = nn.Relu(h)
		}
		out[s] = nn.ConvLayer(scope.At("head%d", s), h, cfg.Channels[s], 1, 1, true, 1)
	}
	return out
}

// ForwardFLOPs counts the floating-point operations (2 per multiply-add) of
// one forward pass of the student on an S×S image, convolutions and dense
// layers only.
func (c Config) ForwardFLOPs(S int) int64 {
	stem, widths := c.StageWidths()
	var macs int64
	conv := func(hw, k, cin, cout int) { macs += int64(hw) * int64(hw) * int64(k*k*cin*cout) }
	conv(S/2, 3, 3, stem)
	in := stem
	for s := 0; s < 3; s++ {
		hw := S / Strides[s]
		conv(hw, 3, in, widths[s])
		for b := 0; b < c.Depth; b++ {
			conv(hw, 3, widths[s], widths[s])
			conv(hw, 3, widths[s], widths[s])
			if c.SEReduction > 0 {
				hid := nn.SEHidden(widths[s], c.SEReduction)
				macs += int64(2 * widths[s] * hid)
			}
		}
		conv(hw, 1, widths[s], c.Channels[s])
		in = widths[s]
	}
	return 2 * macs
}
