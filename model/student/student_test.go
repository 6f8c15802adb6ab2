package student

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	_ "github.com/gomlx/compute/gobackend"
	"github.com/gomlx/compute/shapes"
	. "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"
	"github.com/multiad/multiad/model/nn"
)

// TestStudentGradient checks the autodiff gradient of the KD loss (plain
// and with hard-feature mining) with respect to every variable of a tiny
// student with SE blocks against a central finite difference along random
// directions.
func TestStudentGradient(t *testing.T) {
	for _, hard := range []float64{0, 1} {
		t.Run(fmt.Sprintf("hard=%g", hard), func(t *testing.T) { testStudentGradient(t, hard) })
	}
}

func testStudentGradient(t *testing.T, hard float64) {
	be, err := compute.NewWithConfig("go")
	if err != nil {
		t.Fatal(err)
	}
	const S, N = 32, 2
	cfg := Config{Width: 4, Depth: 1, SEReduction: 2, Channels: [3]int{3, 4, 5}}
	r := rand.New(rand.NewPCG(1, 1))
	rnd := func(dims ...int) *tensors.Tensor {
		n := 1
		for _, d := range dims {
			n *= d
		}
		v := make([]float64, n)
		for i := range v {
			v[i] = r.Float64()
		}
		return tensors.FromFlatDataAndDimensions(v, dims...)
	}
	img := rnd(N, S, S, 3)
	t4, t8, t16 := rnd(N, S/4, S/4, 3), rnd(N, S/8, S/8, 4), rnd(N, S/16, S/16, 5)
	store := model.NewStore()
	store.SetParam(nn.SeedParam, 3)
	store.SetParam(nn.DTypeParam, "float64")
	lossFn := func(scope *model.Scope, in []*Node) *Node {
		s := Forward(scope.At("student"), cfg, in[0])
		return KDLossHard(s, [3]*Node{in[1], in[2], in[3]}, hard)
	}
	gradExec := model.MustNewExec(be, store, func(scope *model.Scope, in []*Node) []*Node {
		l := lossFn(scope, in)
		return append([]*Node{l}, scope.At("student").BuildTrainableVariablesGradientsGraph(l)...)
	})
	out := gradExec.MustCall(img, t4, t8, t16)
	var vars []*model.Variable
	for v := range store.IterVariables() {
		vars = append(vars, v)
	}
	if len(out)-1 != len(vars) {
		t.Fatalf("%d gradients for %d variables", len(out)-1, len(vars))
	}
	var seSeen bool
	for _, v := range vars {
		seSeen = seSeen || v.Scope() == "/student/stage1/block0/se/fc1"
	}
	if !seSeen {
		t.Fatal("no SE variables in the student")
	}
	lossExec := model.MustNewExec(be, store, func(scope *model.Scope, in []*Node) *Node { return lossFn(scope, in) })
	orig := make([][]float64, len(vars))
	for i, v := range vars {
		orig[i] = tensors.MustCopyFlatData[float64](v.MustValue())
	}
	for trial := 0; trial < 3; trial++ {
		dirs := make([][]float64, len(vars))
		var analytic float64
		for i := range vars {
			g := tensors.MustCopyFlatData[float64](out[i+1])
			dirs[i] = make([]float64, len(g))
			for j := range g {
				dirs[i][j] = r.NormFloat64()
				analytic += g[j] * dirs[i][j]
			}
		}
		const eps = 1e-6
		eval := func(sign float64) float64 {
			for i, v := range vars {
				p := make([]float64, len(orig[i]))
				for j := range p {
					p[j] = orig[i][j] + sign*eps*dirs[i][j]
				}
				if err := v.SetValue(tensors.FromFlatDataAndDimensions(p, v.Shape().Dimensions...)); err != nil {
					t.Fatal(err)
				}
			}
			return tensors.ToScalar[float64](lossExec.MustCall1(img, t4, t8, t16))
		}
		fd := (eval(1) - eval(-1)) / (2 * eps)
		eval(0)
		t.Logf("direction %d: autodiff %.6g, finite difference %.6g", trial, analytic, fd)
		if math.Abs(fd-analytic) > 1e-5*math.Max(1, math.Abs(analytic)) {
			t.Errorf("direction %d: autodiff %g, finite difference %g", trial, analytic, fd)
		}
	}
}

func TestForwardShapesAndFLOPs(t *testing.T) {
	be, err := compute.NewWithConfig("go")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	store := model.NewStore()
	const S = 64
	out := model.MustNewExec(be, store, func(scope *model.Scope, x *Node) []*Node {
		f := Forward(scope, cfg, x)
		return append(f[:], Discriminator(scope.At("disc"), f[2]))
	}).MustCall(tensors.FromShape(shapes.Make(dtypes.Float32, 2, S, S, 3)))
	for i, st := range Strides {
		want := []int{2, S / st, S / st, cfg.Channels[i]}
		if got := out[i].Shape().Dimensions; len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[3] != want[3] {
			t.Errorf("scale %d: shape %v, want %v", i, got, want)
		}
	}
	if got := out[3].Shape().Dimensions; len(got) != 1 || got[0] != 2 {
		t.Errorf("discriminator logits shape %v", got)
	}
	// Parameter count from the FLOP formula's conv terms must equal the
	// variables' size (minus biases), an independent check of the counting.
	var params int
	for v := range store.IterVariables() {
		if v.Name() == "kernel" || v.Name() == "weights" {
			if v.Scope()[:5] != "/disc" {
				params += v.Shape().Size()
			}
		}
	}
	// At 16×16 input every stride-16 map is 1×1 and the FLOPs of each conv
	// = 2 · params · output positions; check the total at S=16·k against a
	// direct sum.
	var direct int64
	stem, w := cfg.StageWidths()
	hw := func(s int) int64 { return int64(S/s) * int64(S/s) }
	direct += hw(2) * int64(9*3*stem)
	in := stem
	for s := 0; s < 3; s++ {
		direct += hw(Strides[s]) * int64(9*in*w[s]+cfg.Depth*2*9*w[s]*w[s]+w[s]*cfg.Channels[s])
		direct += int64(cfg.Depth * 2 * w[s] * nn.SEHidden(w[s], cfg.SEReduction))
		in = w[s]
	}
	if got := cfg.ForwardFLOPs(S); got != 2*direct {
		t.Errorf("ForwardFLOPs(%d) = %d, direct count %d", S, got, 2*direct)
	}
	t.Logf("default student: %d weights, %.3f GFLOP forward at 128², %.3f at 256²", params,
		float64(cfg.ForwardFLOPs(128))/1e9, float64(cfg.ForwardFLOPs(256))/1e9)
}

// TestKDLossHard compares KDLossHard with a direct computation: per scale,
// half the mean squared distance of the channel-normalised features over
// the pixels at or above mean + hard·std of the distances, clamped to the
// largest distance (hard 100: only the hardest pixel of each scale trains).
func TestKDLossHard(t *testing.T) {
	be, err := compute.NewWithConfig("go")
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 5))
	dims := [3][4]int{{2, 8, 8, 3}, {2, 4, 4, 4}, {2, 2, 2, 5}}
	var ins []*tensors.Tensor
	var flat [6][]float64
	for k := range 6 {
		d := dims[k%3]
		v := make([]float64, d[0]*d[1]*d[2]*d[3])
		for i := range v {
			v[i] = r.NormFloat64()
		}
		flat[k] = v
		ins = append(ins, tensors.FromFlatDataAndDimensions(v, d[:]...))
	}
	for _, hard := range []float64{0, 0.5, 1.5, 100} {
		got := tensors.ToScalar[float64](model.MustNewExec(be, model.NewStore(), func(scope *model.Scope, in []*Node) *Node {
			return KDLossHard([3]*Node{in[0], in[1], in[2]}, [3]*Node{in[3], in[4], in[5]}, hard)
		}).MustCall1(ins[0], ins[1], ins[2], ins[3], ins[4], ins[5]))
		var want float64
		for k := range 3 {
			c := dims[k][3]
			var dist []float64
			for p := 0; p < len(flat[k])/c; p++ {
				s, tt := flat[k][p*c:(p+1)*c], flat[k+3][p*c:(p+1)*c]
				var ns, nt float64
				for i := range s {
					ns, nt = ns+s[i]*s[i], nt+tt[i]*tt[i]
				}
				var d float64
				for i := range s {
					x := s[i]/math.Sqrt(ns+nn.NormEps) - tt[i]/math.Sqrt(nt+nn.NormEps)
					d += x * x
				}
				dist = append(dist, d)
			}
			var mean, sq float64
			for _, d := range dist {
				mean += d / float64(len(dist))
			}
			for _, d := range dist {
				sq += (d - mean) * (d - mean) / float64(len(dist))
			}
			thr := mean + hard*math.Sqrt(sq)
			if top := slices.Max(dist); thr > top {
				thr = top
			}
			var sum float64
			var n int
			for _, d := range dist {
				if hard <= 0 || d >= thr {
					sum += d
					n++
				}
			}
			want += 0.5 * sum / float64(n)
		}
		if math.Abs(got-want) > 1e-6*want {
			t.Errorf("hard %g: KDLossHard %v, direct %v", hard, got, want)
		}
	}
}

func TestMapConfigValidate(t *testing.T) {
	for _, c := range []struct {
		mc MapConfig
		ok bool
	}{
		{MapConfig{Fuse: FuseSum}, true},
		{MapConfig{Fuse: FuseSum, Pool: [3]int{0, 5, 1}}, true},
		{MapConfig{Fuse: FuseSum, Pool: [3]int{0, 4, 1}}, false},
		{MapConfig{Fuse: FuseSum, Pool: [3]int{17, 0, 0}}, false},
		{MapConfig{Fuse: FuseSum, Pool: [3]int{0, 0, -1}}, false},
		{MapConfig{Fuse: "max"}, false},
		{MapConfig{Fuse: FuseSum, Weights: [3]float64{-1, 1, 1}}, false},
	} {
		if err := c.mc.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok %v", c.mc, err, c.ok)
		}
	}
	if r := (MapConfig{Pool: [3]int{0, 1, 5}}); r.PoolRadius(0) != 0 || r.PoolRadius(1) != 0 || r.PoolRadius(2) != 2 {
		t.Errorf("PoolRadius of %v: %d %d %d, want 0 0 2", r.Pool, r.PoolRadius(0), r.PoolRadius(1), r.PoolRadius(2))
	}
}
