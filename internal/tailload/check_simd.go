//go:build goexperiment.simd && amd64 && linux

package tailload

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"simd"
	"simd/archsimd"
	"syscall"
	"unsafe"
)

// Check loads slices of 1 to 15 float32s that end where a readable page
// ends, followed by an unreadable page, with each tail load the CPU supports
// (archsimd's 128-, 256- and 512-bit LoadFloat32x*Part and the portable
// simd.LoadFloat32sPart GoMLX calls). It returns nil when every load stays
// inside its slice and loads the right values, and an error naming the first
// that does not. It costs two pages of address space for a moment.
func Check() error {
	page := syscall.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("tailload: mapping two pages: %w", err)
	}
	defer syscall.Munmap(mem) //nolint:errcheck // nothing to do about a failed unmap
	if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
		return fmt.Errorf("tailload: protecting the guard page: %w", err)
	}
	floats := unsafe.Slice((*float32)(unsafe.Pointer(&mem[0])), page/4)
	for i := range floats {
		floats[i] = float32(i%1000 + 1)
	}
	type load struct {
		name  string
		lanes int
		ok    bool
		fn    func(s []float32, out []float32) int
	}
	loads := []load{
		{"archsimd.LoadFloat32x4Part", 4, archsimd.X86.AVX(), func(s, out []float32) int {
			v, n := archsimd.LoadFloat32x4Part(s)
			v.Store(out)
			return n
		}},
		{"archsimd.LoadFloat32x8Part", 8, archsimd.X86.AVX2(), func(s, out []float32) int {
			v, n := archsimd.LoadFloat32x8Part(s)
			v.Store(out)
			return n
		}},
		{"archsimd.LoadFloat32x16Part", 16, archsimd.X86.AVX512(), func(s, out []float32) int {
			v, n := archsimd.LoadFloat32x16Part(s)
			v.Store(out)
			return n
		}},
		{"simd.LoadFloat32sPart", simd.BroadcastFloat32s(0).Len(), true, func(s, out []float32) int {
			v, n := simd.LoadFloat32sPart(s)
			v.Store(out)
			return n
		}},
	}
	for _, l := range loads {
		if !l.ok {
			continue
		}
		for n := 1; n < l.lanes; n++ {
			s := floats[len(floats)-n:]
			if err := try(l.name, l.lanes, s, l.fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// try runs one load on a goroutine of its own that turns a fault into a
// panic (debug.SetPanicOnFault), and checks the lanes it loaded.
func try(name string, lanes int, s []float32, fn func(s, out []float32) int) (err error) {
	done := make(chan error, 1)
	go func() {
		debug.SetPanicOnFault(true)
		defer func() {
			if r := recover(); r != nil {
				addr := ""
				if f, ok := r.(interface{ Addr() uintptr }); ok {
					end := uintptr(unsafe.Pointer(unsafe.SliceData(s))) + uintptr(len(s))*4
					addr = fmt.Sprintf(" at %#x, %d bytes after the slice", f.Addr(), f.Addr()-end)
				}
				done <- fmt.Errorf("tailload: %s of a %d-float slice read past the slice's end (a fault%s): this binary's "+
					"toolchain lacks scripts/toolchain/archsimd-partload.patch (build with make, or put scripts/toolchain.sh's "+
					"bin/ first on PATH with GOTOOLCHAIN=local)", name, len(s), addr)
			}
		}()
		out := make([]float32, lanes)
		n := fn(s, out)
		for i := range out {
			want := float32(0)
			if i < len(s) {
				want = s[i]
			}
			if out[i] != want || n != len(s) {
				done <- fmt.Errorf("tailload: %s of a %d-float slice loaded %v (%d lanes), want %v then zeros", name, len(s), out, n, s)
				return
			}
		}
		done <- nil
	}()
	err = <-done
	runtime.KeepAlive(s)
	return err
}
