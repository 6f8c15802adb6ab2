package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
)

// runWorker runs the binary as a Beam SDK worker (the way the SDK container
// starts it). beam.Init does not return in worker mode unless it fails.
func runWorker() (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "multiad: worker failed: %v\n", r)
			code = 1
		}
	}()
	flag.Parse()
	beam.Init()
	_ = context.Background()
	fmt.Fprintln(os.Stderr, "multiad: worker exited")
	return 1
}
