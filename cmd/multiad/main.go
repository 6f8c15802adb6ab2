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
// Run "multiad help COMMAND" or "multiad COMMAND -h" for a command's flags
// and examples.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
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

// usage prints the command list to w.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: multiad COMMAND [flags] [args]\n\ncommands:")
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, `
Run "multiad help COMMAND" or "multiad COMMAND -h" for a command's flags and
examples, "multiad --version" for the version.
Exit status: 0 done, 1 failed, 2 usage error or a failed check before the
work starts (missing ONNX Runtime library, unreadable bundle, output folder).`)
}

func main() {
	// A Beam SDK worker is started with flags only (--worker, --id,
	// --control_endpoint, ...): hand those to Beam's worker entry point.
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "-") && isWorkerInvocation(os.Args[1:]) {
		os.Exit(runWorker())
	}
	os.Exit(run(context.Background(), os.Args[1:]))
}

// run runs the command line args (without the program name) and returns
// the exit status.
func run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		usage(os.Stdout)
		return 0
	case "-version", "--version":
		name = "version"
	case "help":
		// multiad help [COMMAND [SUBCOMMAND]]: the command's -h.
		if len(args) == 1 {
			usage(os.Stdout)
			return 0
		}
		if _, ok := commands[args[1]]; !ok {
			fmt.Fprintf(os.Stderr, "multiad help: unknown command %q (commands: %s)\n", args[1], strings.Join(commandNames(), ", "))
			return 2
		}
		return run(ctx, append(append([]string{}, args[1:]...), "-h"))
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "multiad: unknown command %q (commands: %s; see multiad -h)\n", name, strings.Join(commandNames(), ", "))
		return 2
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	return cmd.run(ctx, args[1:])
}
