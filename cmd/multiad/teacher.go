package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/preprocess"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/pipelines/training"
)

func init() {
	register("teacher", "import a TFLite teacher to ONNX, or classify images with one", runTeacher)
}

func runTeacher(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: multiad teacher import --tflite F|NAME --out teacher.onnx [--features a,b,c]\n       multiad teacher classify --model teacher.onnx [--labels labels.txt] IMAGE...")
		return 2
	}
	switch args[0] {
	case "import":
		return teacherImport(args[1:])
	case "classify":
		return teacherClassify(ctx, args[1:])
	}
	fmt.Fprintf(os.Stderr, "multiad teacher: unknown subcommand %q (want import or classify)\n", args[0])
	return 2
}

func teacherImport(args []string) int {
	fs := flag.NewFlagSet("teacher import", flag.ContinueOnError)
	in := fs.String("tflite", "", "TFLite classifier, or a built-in teacher ("+teacher.BuiltinNames(", ")+"; default: mobilenet_v2 from the shared folder)")
	out := fs.String("out", "", "ONNX file to write")
	feats := fs.String("features", "", "comma-separated names of the three feature tensors (strides 4, 8, 16), or a built-in teacher's layer set ("+teacher.LayersStageEnds+", "+teacher.LayersExpanded+"); default: the last residual add of each stage")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(os.Stderr, "multiad teacher import: --out is required")
		return 2
	}
	var names []string
	if *feats != "" {
		names = strings.Split(*feats, ",")
	}
	t, err := training.LoadTeacher(*in, names)
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad teacher import:", err)
		return 1
	}
	data, err := t.ONNX()
	if err == nil {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad teacher import:", err)
		return 1
	}
	fmt.Printf("imported %s (sha256 %s)\nfeatures %v, channels %v\nwrote %s (%d bytes)\n", t.Path, t.SHA256, t.Features, t.FeatureChannels(), *out, len(data))
	return 0
}

func teacherClassify(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("teacher classify", flag.ContinueOnError)
	model := fs.String("model", "", "teacher ONNX file (from `multiad teacher import`)")
	labelsPath := fs.String("labels", "", "labels.txt (default: beside the shared MobileNetV2)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *model == "" || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: multiad teacher classify --model teacher.onnx IMAGE...")
		return 2
	}
	if *labelsPath == "" {
		p, err := sharedLabels()
		if err != nil {
			fmt.Fprintln(os.Stderr, "multiad teacher classify:", err)
			return 1
		}
		*labelsPath = p
	}
	labels, err := teacher.Labels(*labelsPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad teacher classify:", err)
		return 1
	}
	data, err := os.ReadFile(*model)
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad teacher classify:", err)
		return 1
	}
	sess, err := ort.NewSession(data, []string{teacher.InputImage}, []string{teacher.OutputLogits}, ort.Options{Device: ort.DeviceCPU})
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiad teacher classify:", err)
		return 1
	}
	defer sess.Close()
	code := 0
	for _, uri := range fs.Args() {
		imgs, err := decode.URI(ctx, uri, pixels.DefaultLimits)
		if err != nil {
			fmt.Printf("%s\terror: %v\n", uri, err)
			code = 1
			continue
		}
		// ImageNet classifiers take 224×224 RGB; 8-bit pictures are used as is.
		cfg := preprocess.Config{Size: 224, Mode: preprocess.ModeAuto, Low: 0.5, High: 99.5}
		t, err := preprocess.Tensor(imgs[0], cfg)
		if err != nil {
			fmt.Printf("%s\terror: %v\n", uri, err)
			code = 1
			continue
		}
		preds, err := teacher.Classify(sess, ort.Tensor{Shape: []int64{1, 3, 224, 224}, Data: t})
		if err != nil {
			fmt.Printf("%s\terror: %v\n", uri, err)
			code = 1
			continue
		}
		var parts []string
		for _, p := range preds[0] {
			name := fmt.Sprint(p.Class)
			if p.Class < len(labels) {
				name = labels[p.Class]
			}
			parts = append(parts, fmt.Sprintf("%s (%.2f)", name, p.Score))
		}
		fmt.Printf("%s\t%s\n", uri, strings.Join(parts, ", "))
	}
	return code
}

func sharedLabels() (string, error) {
	p, err := training.LoadTeacherDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(p, "labels.txt"), nil
}
