package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/storage"
)

func init() {
	register("inspect", "decode images and print one line per image, frame or slice", runInspect)
}

func runInspect(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	showPHI := fs.Bool("include-phi", false, "show patient names, IDs and birth dates (off by default)")
	// --show-phi is the old name of --include-phi, kept for scripts.
	fs.BoolVar(showPHI, "show-phi", false, "the old name of --include-phi")
	maxPixels := fs.Int64("max-pixels", pixels.DefaultLimits.MaxPixels, "largest image accepted, in values (rows*cols*channels)")
	maxVoxels := fs.Int64("max-voxels", pixels.DefaultLimits.MaxVoxels, "largest file accepted, in values over all frames or slices")
	h := &help{name: "inspect", synopsis: "multiad inspect [--json] [--include-phi] URI...",
		about: "Decodes each input and prints one line per image, frame or slice: size, stored and rescaled\n" +
			"value ranges, modality and transfer syntax. URIs are local paths, file:// or gs:// objects, or\n" +
			"DICOMweb queries; globs are expanded. Exit status 1 when an input fails to decode.",
		hidden: map[string]bool{"show-phi": true},
		examples: []string{
			"multiad inspect scans/*.dcm",
			"multiad inspect --json --include-phi gs://bucket/study/IM0001.dcm",
			"multiad inspect volume.nii.gz | head",
		}}
	if code, ok := parseArgs(fs, h, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		return usageError("inspect", "missing URI arguments")
	}
	lim := pixels.Limits{MaxPixels: *maxPixels, MaxVoxels: *maxVoxels}
	enc := json.NewEncoder(os.Stdout)
	failed := 0
	fail := func(uri string, err error) {
		failed++
		if *asJSON {
			if err := enc.Encode(map[string]string{"uri": uri, "error": err.Error()}); err != nil {
				fmt.Fprintf(os.Stderr, "multiad inspect: %s: %v\n", uri, err)
			}
		} else {
			fmt.Printf("%s\terror: %v\n", uri, err)
		}
	}
	for _, arg := range fs.Args() {
		uris := []string{arg}
		if hasGlob(arg) {
			m, err := storage.Glob(ctx, arg)
			if err != nil {
				fail(arg, err)
				continue
			}
			if len(m) == 0 {
				fail(arg, fmt.Errorf("no files match"))
				continue
			}
			uris = m
		}
		for _, uri := range uris {
			imgs, err := decode.URI(ctx, uri, lim)
			if err != nil {
				fail(uri, err)
				continue
			}
			for _, img := range imgs {
				s := decode.Summarize(uri, img, *showPHI)
				if *asJSON {
					if err := enc.Encode(s); err != nil {
						fail(uri, err)
					}
					continue
				}
				idx := ""
				if s.Frame != nil {
					idx = fmt.Sprintf("[frame %d]", *s.Frame)
				} else if s.Slice != nil {
					idx = fmt.Sprintf("[slice %d]", *s.Slice)
				}
				fmt.Printf("%s%s\t%dx%dx%d %s\tmin %g max %g mean %.4g\trescaled min %g max %g mean %.4g\t%s %s%s\n",
					uri, idx, s.Rows, s.Cols, s.Channels, s.DType, s.Min, s.Max, s.Mean,
					s.RescaledMin, s.RescaledMax, s.RescaledMean, s.Modality, s.TransferSyntax, phiText(s.PHI))
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "multiad inspect: %d input(s) failed\n", failed)
		return 1
	}
	return 0
}

func hasGlob(s string) bool {
	for _, c := range s {
		if c == '*' || c == '?' || c == '[' {
			return true
		}
	}
	return false
}

// phiText renders identifying fields for inspect's text lines: a tab and
// "phi" then key=value pairs in key order ("" when there are none, as
// without --include-phi).
func phiText(phi map[string]string) string {
	if len(phi) == 0 {
		return ""
	}
	keys := make([]string, 0, len(phi))
	for k := range phi {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\tphi")
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", k, phi[k])
	}
	return b.String()
}
