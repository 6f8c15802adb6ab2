package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
)

// runWorker runs the binary as a Beam SDK worker (the way the SDK container
// starts it). It first checks that the control endpoint answers, so a
// misconfigured worker fails in seconds with a clear message instead of
// after Beam's one-minute dial timeout. beam.Init does not return in worker
// mode unless it fails.
func runWorker() (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "multiad: worker failed: %v\n", r)
			code = 1
		}
	}()
	if addr := flagValue(os.Args[1:], "control_endpoint"); addr != "" {
		if err := probe(addr, 10*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "multiad: worker: control endpoint %s not reachable: %v\n", addr, err)
			return 1
		}
	}
	flag.Parse()
	beam.Init()
	fmt.Fprintln(os.Stderr, "multiad: worker exited")
	return 1
}

// probe dials addr every 200 ms until it answers or the timeout passes.
func probe(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// flagValue returns the value of --name=value or --name value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// isWorkerInvocation reports whether args look like the Beam Go SDK
// container's worker command line (--worker, --control_endpoint), as
// opposed to runner flags such as --worker_binary.
func isWorkerInvocation(args []string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		name, _, _ := strings.Cut(a, "=")
		if name == "worker" || name == "control_endpoint" {
			return true
		}
	}
	return false
}
