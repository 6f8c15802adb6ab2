package train

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"testing"
	"unsafe"
)

// TestReserveHeap checks that after reserveHeap a new heap object has at
// least half of heapHeadroom of mapped memory after it (/proc/self/maps),
// so that a read a few bytes past a buffer's end stays in mapped memory.
func TestReserveHeap(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/maps")
	}
	reserveHeap()
	runtime.GC()
	b := make([]float32, 16<<10) // a 64 KiB buffer, as in the faulting op
	addr := uintptr(unsafe.Pointer(&b[len(b)-1])) + 4
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	// Adjacent readable mappings count as one range.
	var lo, hi uintptr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var start, end uintptr
		var perms string
		if _, err := fmt.Sscanf(sc.Text(), "%x-%x %s", &start, &end, &perms); err != nil || perms[0] != 'r' {
			continue
		}
		if start == hi {
			hi = end
		} else {
			lo, hi = start, end
		}
		if lo <= addr && addr < hi {
			for sc.Scan() { // extend over the readable mappings that follow
				if _, err := fmt.Sscanf(sc.Text(), "%x-%x %s", &start, &end, &perms); err != nil || perms[0] != 'r' || start != hi {
					break
				}
				hi = end
			}
			break
		}
	}
	if !(lo <= addr && addr < hi) {
		t.Fatalf("the buffer's end %#x is in no readable mapping", addr)
	}
	if after := hi - addr; after < heapHeadroom/2 {
		t.Errorf("%d MiB of mapped memory after a new buffer, want at least %d", after>>20, heapHeadroom/2>>20)
	}
	runtime.KeepAlive(b)
}
