package onnxb

import "fmt"

// Transpose permutes the axes of x, a dense row-major tensor of shape dims,
// as ONNX's Transpose operator does: axis i of the result is axis perm[i]
// of x. It moves constants between layouts (NHWC to NCHW, a GoMLX kernel
// [kH,kW,Cin,Cout] to ONNX's [Cout,Cin,kH,kW]) before they become
// initializers. It fails unless perm is a permutation of the axes and dims
// holds len(x) values.
func Transpose(x []float32, dims []int, perm ...int) ([]float32, error) {
	n := 1
	for _, d := range dims {
		if d < 0 {
			return nil, fmt.Errorf("onnxb: transpose: negative dimension in %v", dims)
		}
		n *= d
	}
	if n != len(x) {
		return nil, fmt.Errorf("onnxb: transpose: dims %v do not hold %d values", dims, len(x))
	}
	if len(perm) != len(dims) {
		return nil, fmt.Errorf("onnxb: transpose: perm %v for %d axes", perm, len(dims))
	}
	in := make([]int, len(dims)) // row-major strides of x
	for i, s := len(dims)-1, 1; i >= 0; i-- {
		in[i], s = s, s*dims[i]
	}
	seen := make([]bool, len(dims))
	stride, out := make([]int, len(perm)), make([]int, len(perm)) // x's step and the size of each result axis
	for i, p := range perm {
		if p < 0 || p >= len(dims) || seen[p] {
			return nil, fmt.Errorf("onnxb: transpose: perm %v is not a permutation of %d axes", perm, len(dims))
		}
		seen[p] = true
		stride[i], out[i] = in[p], dims[p]
	}
	y := make([]float32, len(x))
	idx := make([]int, len(perm)) // the result's index, counted up in row-major order
	src := 0
	for j := range y {
		y[j] = x[src]
		for a := len(idx) - 1; a >= 0; a-- {
			idx[a]++
			src += stride[a]
			if idx[a] < out[a] {
				break
			}
			src -= stride[a] * out[a]
			idx[a] = 0
		}
	}
	return y, nil
}
