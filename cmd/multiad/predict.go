package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/inference"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
)

func init() {
	register("predict", "score images with a bundle, without Beam", runPredict)
}

// predictLine is one line of `multiad predict --json`. A failed input
// has an error and no score or verdict.
type predictLine struct {
	URI             string   `json:"uri"`
	Index           *int     `json:"slice,omitempty"`
	Score           *float64 `json:"score,omitempty"`
	NormalizedScore *float64 `json:"normalized_score,omitempty"`
	Anomalous       *bool    `json:"anomalous,omitempty"`
	Heatmap         string   `json:"heatmap,omitempty"`
	Mask            string   `json:"mask,omitempty"`
	RawMap          string   `json:"raw_map,omitempty"`
	Error           string   `json:"error,omitempty"`
}

func runPredict(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("predict", flag.ContinueOnError)
	model := fs.String("model", "", "model bundle (directory or .tar, local or gs://)")
	heatmaps := fs.String("heatmaps", "multiad-heatmaps", "folder for heatmap PNGs at each image's size (\"\" for none)")
	masks := fs.Bool("masks", true, "write the predicted defect mask of each flagged image beside its heatmap")
	rawMaps := fs.Bool("raw-maps", false, "write each anomaly map as 16-bit gray PNG beside its heatmap (value/65535 = normalised pixel score)")
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
	m, err := inference.Load(ctx, *model, ort.Options{Device: dev, IntraOpThreads: *threads})
	if err != nil {
		fmt.Fprintf(os.Stderr, "multiad predict: %v (give --model a bundle written by multiad train)\n", err)
		return 2
	}
	defer m.Close()
	cal := m.Calibration()
	enc := json.NewEncoder(os.Stdout)
	code := 0
	print := func(l predictLine) {
		if *asJSON {
			if err := enc.Encode(l); err != nil {
				fmt.Fprintf(os.Stderr, "multiad predict: %s: %v\n", l.URI, err)
				code = 1
			}
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
		if *l.Anomalous {
			verdict = "ANOMALOUS"
		}
		fmt.Printf("%s\tscore %.6f\tnormalised %.3f\t%s\t%s\n", name, *l.Score, *l.NormalizedScore, verdict, l.Heatmap)
	}
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
			if err := predictOne(m, cal, uri, img, &l, *heatmaps, *masks, *rawMaps); err != nil {
				l = predictLine{URI: l.URI, Index: l.Index, Error: err.Error()}
				code = 1
			}
			print(l)
		}
	}
	if code != 0 && !*asJSON {
		fmt.Fprintln(os.Stderr, "multiad predict: some inputs failed (see the error lines)")
	}
	return code
}

// predictOne scores one image into l and writes its heatmap, mask and raw
// map into dir (none when dir is ""), named from the whole input path and
// index (report.FileName), so that a/x.png and b/x.png never collide.
func predictOne(m *inference.Model, cal bundle.Scores, uri string, img *pixels.Image, l *predictLine, dir string, masks, rawMaps bool) error {
	// The view for the heatmap comes from the same normalisation as the
	// model input; none is needed without an output folder.
	x, view, err := score.Preprocess(m, img, score.Options{KeepMaps: dir != ""})
	if err != nil {
		return err
	}
	maps, scores, err := m.Score([][]float32{x})
	if err != nil {
		return err
	}
	sc := float64(scores[0])
	anom := sc > m.Threshold()
	norm := cal.Normalize(sc)
	l.Score, l.Anomalous, l.NormalizedScore = &sc, &anom, &norm
	if dir == "" {
		return nil
	}
	r := score.Result{Item: read.Item{URI: uri, Index: img.Index}, Score: sc, Anomalous: anom, Normalized: norm,
		Size: m.Size(), Map: maps[0], Gray: score.Gray(x, m.Size()), Rows: img.Rows, Cols: img.Cols, View: view}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, strings.TrimSuffix(report.FileName(r.Item), ".png"))
	write := func(suffix string, render func() (image.Image, error)) (string, error) {
		img, err := render()
		if err != nil {
			return "", err
		}
		b, err := report.EncodePNG(img)
		if err != nil {
			return "", err
		}
		name := base + suffix
		return name, os.WriteFile(name, b, 0o644)
	}
	if l.Heatmap, err = write("_heatmap.png", func() (image.Image, error) { return report.Heatmap(r, cal) }); err != nil {
		return err
	}
	if masks && anom {
		if l.Mask, err = write("_mask.png", func() (image.Image, error) { return report.PredictedMask(r, cal) }); err != nil {
			return err
		}
	}
	if rawMaps {
		if l.RawMap, err = write("_map.png", func() (image.Image, error) { return report.RawMap(r, cal) }); err != nil {
			return err
		}
	}
	return nil
}
