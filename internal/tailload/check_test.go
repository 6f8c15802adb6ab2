package tailload

import "testing"

// TestCheck fails when the test binary's toolchain reads past a slice's end
// in a SIMD tail load: Go 1.27.3 without scripts/toolchain.sh's patch. make
// builds with the patched toolchain.
func TestCheck(t *testing.T) {
	if err := Check(); err != nil {
		t.Fatal(err)
	}
}
