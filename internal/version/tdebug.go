package version

import (
	"fmt"
	"os"
	"runtime/pprof"
	"time"
)

var t0 = time.Now()

// T is a temporary timeline probe.
func T(what string) {
	if os.Getenv("MULTIAD_T") != "" {
		fmt.Fprintf(os.Stderr, "T %7.1f ms %s\n", float64(time.Since(t0).Microseconds())/1e3, what)
	}
}

var profFile *os.File

// TProf starts (on) or stops a temporary CPU profile.
func TProf(on bool) {
	p := os.Getenv("MULTIAD_TPROF")
	if p == "" {
		return
	}
	if on {
		profFile, _ = os.Create(p)
		pprof.StartCPUProfile(profFile)
		return
	}
	pprof.StopCPUProfile()
	profFile.Close()
}
