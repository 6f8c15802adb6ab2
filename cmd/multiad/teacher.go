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

const teacherUsage = `usage: multiad teacher import --out teacher.onnx [--tflite F|NAME] [--features a,b,c]
       multiad teacher classify --model teacher.onnx [--labels labels.txt] IMAGE...

The teacher is the pretrained CNN whose features the student learns to match.
  import    convert a TFLite classifier (default: the shared MobileNetV2) to an ONNX
            teacher with logits and feat_s4/s8/s16 outputs
  classify  print the top-5 ImageNet labels of images, to check a teacher

Run "multiad teacher import -h" or "multiad teacher classify -h" for their flags.

examples:
  multiad teacher import --out teacher.onnx
  multiad teacher classify --model teacher.onnx cat.jpg dog.png`

func runTeacher(ctx context.Context, args []string) int {
	if len(args) == 0 {
		return usageError("teacher", "missing subcommand: import or classify")
	}
	switch args[0] {
	case "import":
		return teacherImport(args[1:])
	case "classify":
		return teacherClassify(ctx, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Println(teacherUsage)
		return 0
	}
	return usageError("teacher", fmt.Sprintf("unknown subcommand %q (want import or classify)", args[0]))
}

func teacherImport(args []string) int {
	fs := flag.NewFlagSet("teacher import", flag.ContinueOnError)
	in := fs.String("tflite", "", "TFLite classifier, or a built-in teacher ("+teacher.BuiltinNames(", ")+"; default: mobilenet_v2 from the shared folder)")
	out := fs.String("out", "", "ONNX file to write")
	feats := fs.String("features", "", "comma-separated names of the three feature tensors (strides 4, 8, 16), or a built-in teacher's layer set ("+teacher.LayersStageEnds+", "+teacher.LayersExpanded+"); default: the last residual add of each stage")
	h := &help{name: "teacher import", synopsis: "multiad teacher import --out teacher.onnx [--tflite F|NAME] [--features a,b,c]",
		about: "Dequantizes a TFLite classifier into a float ONNX graph with its logits and three feature\n" +
			"outputs (feat_s4, feat_s8, feat_s16), the teacher that `multiad train --teacher` takes.",
		examples: []string{
			"multiad teacher import --out teacher.onnx",
			"multiad teacher import --tflite mobilenet_edgetpu --out edgetpu.onnx",
		}}
	if code, ok := parseArgs(fs, h, args); !ok {
		return code
	}
	if msg := missingFlags(fs, "out"); msg != "" {
		return usageError(h.name, msg)
	}
	if fs.NArg() > 0 {
		return usageError(h.name, fmt.Sprintf("unexpected arguments %q", fs.Args()))
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
	// No back quotes in usage strings: the flag package shows a quoted
	// word as the flag's value placeholder.
	model := fs.String("model", "", "the teacher ONNX file (written by multiad teacher import)")
	labelsPath := fs.String("labels", "", "labels.txt (default: beside the shared MobileNetV2)")
	h := &help{name: "teacher classify", synopsis: "multiad teacher classify --model teacher.onnx [--labels labels.txt] IMAGE...",
		about: "Prints the top-5 ImageNet labels of each image with the teacher's classifier head: a quick\n" +
			"check that an imported teacher sees what it should.",
		examples: []string{
			"multiad teacher classify --model teacher.onnx cat.jpg",
			"multiad teacher classify --model teacher.onnx --labels labels.txt photos/*.png",
		}}
	if code, ok := parseArgs(fs, h, args); !ok {
		return code
	}
	if msg := missingFlags(fs, "model"); msg != "" {
		return usageError(h.name, msg)
	}
	if fs.NArg() == 0 {
		return usageError(h.name, "missing IMAGE arguments")
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
