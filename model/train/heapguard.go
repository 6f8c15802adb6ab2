package train

import (
	"runtime"
	"sync"
)

// heapHeadroom is how far reserveHeap grows the heap's mapping ahead of
// need.
const heapHeadroom = 1 << 30

// reserveHeap works around a fault in Go 1.27.3's simd/archsimd, which the
// pure-Go backend's element-wise ops use. Its tail loads
// (LoadFloat32x16Part and the like) read a whole vector where the slice has
// fewer elements left: up to 60 bytes past the slice's end. The runtime
// maps the heap 4 MiB at a time, so when a buffer ends exactly where the
// mapped heap ends, that read faults ("unexpected fault address" in
// LoadFloat32x16Part; it crashed model/export's and cmd/multiad's training
// tests in CI, and 1 run in 20 of TestParityMobileNetV2 here).
//
// It allocates heapHeadroom bytes once and drops them. The runtime maps
// that much more heap and keeps it mapped after the collector frees it
// (returned pages stay readable), and it places new objects at the lowest
// free addresses, so every buffer has mapped memory after it until the
// heap outgrows the headroom. The pages are never written: they cost
// address space, not memory. Remove it once the toolchain's tail loads are
// masked loads.
var reserveHeap = sync.OnceFunc(func() {
	b := make([]byte, heapHeadroom)
	runtime.KeepAlive(b)
})
