package teacher

import (
	"math"
	"testing"
	"time"

	"github.com/gomlx/compute"
	_ "github.com/gomlx/compute/gobackend"
	G "github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/multiad/multiad/model/ort"
)

// TestGoMLXMatchesONNX compares the GoMLX teacher's features with ONNX
// Runtime running the exported graph.
func TestGoMLXMatchesONNX(t *testing.T) {
	for _, rel := range []string{v2Path, v3Path, edgeTPUPath} {
		te := importShared(t, rel)
		const n, s = 2, 64
		nchw := make([]float32, n*3*s*s)
		for i := range nchw {
			nchw[i] = float32((i*7919)%1000) / 999
		}
		want, err := session(t, te, FeatureOutputs[:], 1).Run(ort.Tensor{Shape: []int64{n, 3, s, s}, Data: nchw})
		if err != nil {
			t.Fatal(err)
		}
		nhwc := make([]float32, len(nchw))
		for i := 0; i < n; i++ {
			for c := 0; c < 3; c++ {
				for y := 0; y < s; y++ {
					for x := 0; x < s; x++ {
						nhwc[((i*s+y)*s+x)*3+c] = nchw[((i*3+c)*s+y)*s+x]
					}
				}
			}
		}
		be, err := compute.NewWithConfig("go")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var buildErr error
		got, err := G.ExecOnceN(be, func(img *G.Node) []*G.Node {
			f, err := te.GoMLX(img)
			if err != nil {
				buildErr = err
				return []*G.Node{img}
			}
			return f[:]
		}, tensors.FromFlatDataAndDimensions(nhwc, n, s, s, 3))
		if buildErr != nil {
			t.Fatal(buildErr)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: GoMLX go backend, %d images %dx%d: %v", rel, n, s, s, time.Since(start))
		for k := range want {
			sh := want[k].Shape
			c, h, w := int(sh[1]), int(sh[2]), int(sh[3])
			d := got[k].Shape().Dimensions
			if d[0] != n || d[1] != h || d[2] != w || d[3] != c {
				t.Fatalf("%s: GoMLX shape %v, ONNX %v", FeatureOutputs[k], d, sh)
			}
			g := tensors.MustCopyFlatData[float32](got[k])
			var maxd, maxv float64
			for i := 0; i < n; i++ {
				for q := 0; q < c; q++ {
					for y := 0; y < h; y++ {
						for x := 0; x < w; x++ {
							a := float64(want[k].Data[((i*c+q)*h+y)*w+x])
							b := float64(g[((i*h+y)*w+x)*c+q])
							maxd = math.Max(maxd, math.Abs(a-b))
							maxv = math.Max(maxv, math.Abs(a))
						}
					}
				}
			}
			t.Logf("%s: max |GoMLX − ONNX| %.2g (max |value| %.3g)", FeatureOutputs[k], maxd, maxv)
			if maxd > 1e-3*math.Max(1, maxv) {
				t.Errorf("%s: GoMLX and ONNX differ by %g", FeatureOutputs[k], maxd)
			}
		}
	}
}
