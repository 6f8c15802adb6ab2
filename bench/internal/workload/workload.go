// Package workload prepares what the scoring benchmarks feed a model: the
// decoded images of an input (listed and decoded exactly as the scoring
// pipeline does) and the model's FLOPs per image.
package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/student"
	"github.com/multiad/multiad/model/teacher"
	"github.com/multiad/multiad/transforms/read"
)

// Decode lists input (a directory, MVTec layout or manifest CSV) with
// read.List and decodes its files with read.ExpandFile, as the pipeline's
// ReadImages does. max > 0 keeps at most max images. It fails on the first
// image that cannot be read.
func Decode(ctx context.Context, input string, max int) ([]read.Decoded, error) {
	files, err := read.List(ctx, input)
	if err != nil {
		return nil, err
	}
	var out []read.Decoded
	var ferr error
	for _, f := range files {
		read.ExpandFile(ctx, f, read.Options{}, func(d read.Decoded) { out = append(out, d) },
			func(fl read.Failure) {
				if ferr == nil {
					ferr = fmt.Errorf("workload: %s: %s", fl.URI, fl.Error)
				}
			})
		if ferr != nil {
			return nil, ferr
		}
		if max > 0 && len(out) >= max {
			return out[:max], nil
		}
	}
	return out, nil
}

// Files lists input as the pipeline does, keeping the first max files
// (max <= 0: all).
func Files(ctx context.Context, input string, max int) ([]read.File, error) {
	files, err := read.List(ctx, input)
	if err != nil {
		return nil, err
	}
	if max > 0 && len(files) > max {
		files = files[:max]
	}
	return files, nil
}

// TeacherPath is the default MobileNetV2 teacher in the shared folder.
func TeacherPath(shared string) string {
	return filepath.Join(shared, "weights", "mobilenet_v2", "mobilenet_v2_1.0_224.uint8.tflite")
}

// FLOPs returns the floating-point operations (2 per multiply-add, convolutions
// and dense layers) of one S×S image through a bundle's model: the teacher
// pruned to its feature maps (teacher.Program.MACs) plus the student
// (student.Config.ForwardFLOPs, sized from the manifest's training record).
// The anomaly-map arithmetic (normalisation, cosine, upsampling, blur) is
// not counted. A bundle whose teacher is not the TFLite teacher at
// teacherPath returns an error.
func FLOPs(b *bundle.Bundle, teacherPath string) (teacherFLOPs, studentFLOPs int64, err error) {
	S := b.Manifest.Preprocess.Size
	t, err := teacher.Import(teacherPath, teacher.ImportOptions{Features: b.Manifest.Teacher.Features})
	if err != nil {
		return 0, 0, fmt.Errorf("workload: %w", err)
	}
	p, err := t.Program.Prune(t.Features[:]...)
	if err != nil {
		return 0, 0, fmt.Errorf("workload: %w", err)
	}
	cfg := student.DefaultConfig()
	cfg.Channels = t.FeatureChannels()
	if tr := b.Manifest.Training; tr != nil && len(tr.Student) > 0 {
		if err := json.Unmarshal(tr.Student, &cfg); err != nil {
			return 0, 0, fmt.Errorf("workload: manifest student config: %w", err)
		}
	}
	return 2 * p.MACs(S, S), cfg.ForwardFLOPs(S), nil
}
