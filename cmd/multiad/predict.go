package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/runtime"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

func init() {
	register("predict", "score images with a bundle, without Beam", runPredict)
}

// predictLine is one line of `multiad predict --json`.
type predictLine struct {
	URI       string  `json:"uri"`
	Index     *int    `json:"slice,omitempty"`
	Score     float64 `json:"score"`
	Anomalous bool    `json:"anomalous"`
	Heatmap   string  `json:"heatmap,omitempty"`
	Error     string  `json:"error,omitempty"`
}

func runPredict(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("predict", flag.ContinueOnError)
	model := fs.String("model", "", "model bundle (directory or .tar, local or gs://)")
	heatmaps := fs.String("heatmaps", "multiad-heatmaps", "folder for heatmap PNGs (\"\" for none)")
	device := fs.String("device", "auto", "auto, cpu or cuda")
	threads := fs.Int("threads", 0, "ONNX Runtime intra-op threads (0: default)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	logLevel := logLevelFlag(fs, "warn")
	h := &help{name: "predict", synopsis: "multiad predict --model BUNDLE [--heatmaps DIR] [--json] IMAGE...",
		about: "Scores images with a model bundle in this process, without Beam: one line per image, frame or\n" +
			"slice with its score, verdict and heatmap PNG. For folders, labels, metrics and reports use\n" +
			"multiad score. Exit status 1 when an input fails, 2 for a usage error or when the ONNX Runtime\n" +
			"library or the bundle cannot be loaded.",
		examples: []string{
			"multiad predict --model tiles.bundle part1.png part2.png",
			"multiad predict --model gs://bucket/models/mri.tar --json --heatmaps \"\" scan.dcm",
		}}
	if code, ok := parseArgs(fs, h, args); !ok {
		return code
	}
	if msg := missingFlags(fs, "model"); msg != "" {
		return usageError("predict", msg)
	}
	if fs.NArg() == 0 {
		return usageError("predict", "missing IMAGE arguments")
	}
	dev, err := ort.ParseDevice(*device)
	if err != nil {
		return usageError("predict", "--device: "+err.Error())
	}
	level, err := parseLogLevel(*logLevel, "warn")
	if err != nil {
		return usageError("predict", err.Error())
	}
	setLogLevel(level)
	// Preflight: the library and the bundle load before any input is read.
	if err := checkORT(); err != nil {
		fmt.Fprintln(os.Stderr, "multiad predict:", err)
		return 2
	}
	m, err := runtime.Load(ctx, *model, ort.Options{Device: dev, IntraOpThreads: *threads})
	if err != nil {
		fmt.Fprintf(os.Stderr, "multiad predict: %v (give --model a bundle written by multiad train)\n", err)
		return 2
	}
	defer m.Close()
	sc := m.Bundle.Manifest.Scores
	enc := json.NewEncoder(os.Stdout)
	print := func(l predictLine) {
		if *asJSON {
			enc.Encode(l)
			return
		}
		name := l.URI
		if l.Index != nil {
			name = fmt.Sprintf("%s[%d]", l.URI, *l.Index)
		}
		if l.Error != "" {
			fmt.Printf("%s\terror: %s\n", name, l.Error)
			return
		}
		verdict := "normal"
		if l.Anomalous {
			verdict = "ANOMALOUS"
		}
		fmt.Printf("%s\tscore %.6f\t%s\t%s\n", name, l.Score, verdict, l.Heatmap)
	}
	code := 0
	for _, uri := range fs.Args() {
		imgs, err := decode.URI(ctx, uri, pixels.DefaultLimits)
		if err != nil {
			print(predictLine{URI: uri, Error: err.Error()})
			code = 1
			continue
		}
		for _, img := range imgs {
			l := predictLine{URI: uri}
			if len(imgs) > 1 {
				i := img.Index
				l.Index = &i
			}
			x, err := m.Preprocess(img)
			if err != nil {
				l.Error = err.Error()
				print(l)
				code = 1
				continue
			}
			maps, scores, err := m.Score([][]float32{x})
			if err != nil {
				l.Error = err.Error()
				print(l)
				code = 1
				continue
			}
			l.Score = float64(scores[0])
			l.Anomalous = l.Score > m.Threshold()
			if *heatmaps != "" {
				r := score.Result{Item: read.Item{URI: uri, Index: img.Index}, Score: l.Score, Size: m.Size(), Map: maps[0], Gray: score.Gray(x, m.Size())}
				png, err := report.OverlayPNG(r, sc.PixelMin, sc.PixelMax)
				if err == nil {
					base := strings.TrimSuffix(filepath.Base(uri), filepath.Ext(uri))
					if l.Index != nil {
						base = fmt.Sprintf("%s_%04d", base, *l.Index)
					}
					l.Heatmap = filepath.Join(*heatmaps, base+"_heatmap.png")
					if err = os.MkdirAll(*heatmaps, 0o755); err == nil {
						err = os.WriteFile(l.Heatmap, png, 0o644)
					}
				}
				if err != nil {
					l.Error = err.Error()
					code = 1
				}
			}
			print(l)
		}
	}
	return code
}
