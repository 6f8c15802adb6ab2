package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"

	"github.com/multiad/multiad/internal/version"
)

// build describes the build: set by `make build` with
// -ldflags "-X main.build=$(git describe --always --dirty)". Without it,
// versionLine falls back to the VCS revision in the binary's build info.
var build string

func init() {
	register("version", "print the multiad version", runVersion)
}

func runVersion(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	h := &help{name: "version", synopsis: "multiad version   (or multiad --version)",
		about: "Prints the multiad release version (the one written into model bundles and reports), then the\n" +
			"build: the commit `make build` stamps in with -ldflags \"-X main.build=...\", else the VCS revision\n" +
			"from the binary's build info, else \"unknown\"; and the Go version.",
		examples: []string{"multiad version", "multiad --version"}}
	if code, ok := parseArgs(fs, h, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError("version", fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	fmt.Println(versionLine())
	return 0
}

// versionLine is "multiad VERSION (build B, GO)".
func versionLine() string {
	b, goVersion := build, "go?"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		if b == "" {
			var rev, dirty string
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					if s.Value == "true" {
						dirty = "-dirty"
					}
				}
			}
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if rev != "" {
				b = rev + dirty
			}
		}
	}
	if b == "" {
		b = "unknown"
	}
	return fmt.Sprintf("multiad %s (build %s, %s)", version.Version, b, goVersion)
}
