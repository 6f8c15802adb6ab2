// Package tailload checks that the running binary's SIMD tail loads stay
// inside their slice.
//
// Go 1.27.3's simd/archsimd loads the tail of a slice (LoadFloat32x16Part and
// the others) by loading a whole vector from the tail's start and zeroing the
// lanes past the slice's end: it reads up to 60 bytes past the slice. GoMLX's
// pure-Go backend, which trains the student, loads every tail that way, and
// when one of its buffers ends where mapped memory ends the process dies with
// "unexpected fault address". The project builds with a toolchain patched by
// scripts/toolchain.sh, whose tail loads copy the tail first; [Check] tells
// whether the running binary was built that way.
package tailload
