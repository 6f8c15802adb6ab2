// Command multiad screens image archives for anomalies with Multi-AD.
//
// Usage:
//
//	multiad inspect [--json] [--show-phi] URI...
//	multiad teacher import --tflite F --out teacher.onnx
//	multiad teacher classify --model teacher.onnx IMAGE...
//	multiad train --data D --out BUNDLE [flags]
//	multiad predict --model BUNDLE IMAGE...
//	multiad score --model BUNDLE --input IN --output OUT [flags] [Beam flags]
//	multiad version
//
// Run "multiad COMMAND -h" for a command's flags.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) int
}

var commands = map[string]command{}

// register adds a subcommand; each command's file calls it from init.
func register(name, summary string, run func(ctx context.Context, args []string) int) {
	commands[name] = command{summary, run}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: multiad COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", n, commands[n].summary)
	}
}

func main() {
	// A Beam SDK worker is started with flags only (--worker, --id,
	// --control_endpoint, ...): hand those to Beam's worker entry point.
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-") && isWorkerInvocation(os.Args[1:]) {
		os.Exit(runWorker())
	}
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage()
		return
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "multiad: unknown command %q\n", name)
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := cmd.run(ctx, os.Args[2:])
	stop()
	os.Exit(code)
}
