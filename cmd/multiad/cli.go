package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	blog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"

	"github.com/multiad/multiad/model/ort"
)

// help describes a command for its -h output: a synopsis, a paragraph,
// the flags in groups, and worked examples. Every command prints help the
// same way (writeHelp): on stdout with exit 0 for -h, --help and
// `multiad help CMD`.
type help struct {
	// name is the command as typed ("train", "teacher import").
	name     string
	synopsis string
	about    string
	// groups lists the flags to show, in order, under titles; flags in
	// no group are listed last under "flags" unless hidden. A nil groups
	// lists every flag under "flags".
	groups []flagGroup
	// hidden names flags left out of the help (aliases kept for old
	// scripts).
	hidden map[string]bool
	// own, when set, tells the command's flags from others on the same
	// flag set (score's Beam flags), which the help leaves out.
	own func(name string) bool
	// after is printed after the flags (score's pointer to Beam's flags).
	after    string
	examples []string
}

type flagGroup struct {
	title string
	names []string
}

// write prints h for the flags of fs to w.
func (h *help) write(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n", h.synopsis)
	if h.about != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(h.about))
	}
	listed := map[string]bool{}
	for _, g := range h.groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		printFlags(w, fs, g.names)
		for _, n := range g.names {
			listed[n] = true
		}
	}
	var rest []string
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] && !h.hidden[f.Name] && (h.own == nil || h.own(f.Name)) {
			rest = append(rest, f.Name)
		}
	})
	if len(rest) > 0 {
		title := "flags"
		if len(h.groups) > 0 {
			title = "other flags"
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		printFlags(w, fs, rest)
	}
	if h.after != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(h.after))
	}
	if len(h.examples) > 0 {
		fmt.Fprintln(w, "\nexamples:")
		for _, e := range h.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// printFlags prints the named flags of fs in flag.PrintDefaults' layout,
// in the order given.
func printFlags(w io.Writer, fs *flag.FlagSet, names []string) {
	// PrintDefaults sorts by name: print one flag set per flag to keep
	// the given order.
	for _, n := range names {
		f := fs.Lookup(n)
		if f == nil {
			continue
		}
		one := flag.NewFlagSet("", flag.ContinueOnError)
		one.SetOutput(w)
		one.Var(f.Value, f.Name, f.Usage)
		one.Lookup(n).DefValue = f.DefValue
		one.PrintDefaults()
	}
}

// parseArgs parses args into fs for the command h describes. It returns
// ok, or the exit code to return: 0 after printing the help on stdout
// (-h, --help), 2 after a one-line usage error on stderr.
func parseArgs(fs *flag.FlagSet, h *help, args []string) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			h.write(os.Stdout, fs)
			return 0, false
		}
		return usageError(h.name, err.Error()), false
	}
	return 0, true
}

// usageError prints a one-line usage error for the command and returns
// exit status 2.
func usageError(name, msg string) int {
	fmt.Fprintf(os.Stderr, "multiad %s: %s (see multiad %s -h)\n", name, msg, name)
	return 2
}

// missingFlags returns "missing --a, --b" for the named flags of fs that
// are empty, or "".
func missingFlags(fs *flag.FlagSet, names ...string) string {
	var miss []string
	for _, n := range names {
		if f := fs.Lookup(n); f != nil && f.Value.String() == "" {
			miss = append(miss, "--"+n)
		}
	}
	if len(miss) == 0 {
		return ""
	}
	return "missing " + strings.Join(miss, ", ")
}

// Log levels of --log-level.
var logLevels = []string{"error", "warn", "info", "debug"}

// logLevelFlag registers --log-level on fs; def describes its default
// (the flag's value is "" until given).
func logLevelFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("log-level", "", "log messages at this level and above: error, warn, info or debug (default "+def+")")
}

// parseLogLevel checks a --log-level value; "" gives dflt.
func parseLogLevel(s, dflt string) (string, error) {
	if s == "" {
		return dflt, nil
	}
	s = strings.ToLower(s)
	for _, l := range logLevels {
		if s == l {
			return s, nil
		}
	}
	return "", fmt.Errorf("--log-level %q: want error, warn, info or debug", s)
}

// setLogLevel routes the log and log/slog packages (multiad's own log
// lines at info, Beam's and Prism's) through Beam's slog handler at level,
// as beam.Init does from blog.LogLevel.
func setLogLevel(level string) {
	blog.LogLevel = level
	blog.SetupLogging(level, "text")
}

// commandNames returns the registered commands, sorted.
func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkORT loads the ONNX Runtime library, a check made before any work
// starts; its error says where the library is looked for.
func checkORT() error {
	if err := ort.Init(); err != nil {
		return fmt.Errorf("cannot load the ONNX Runtime library: %v (make build puts libonnxruntime.so.1 beside bin/multiad; elsewhere set %s to its path)", err, ort.LibEnvVar)
	}
	return nil
}
