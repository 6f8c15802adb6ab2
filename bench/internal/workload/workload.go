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
// read.List and decodes its files with a read.Expander, as the pipeline's
// ReadImages does. max > 0 keeps at most max images. It fails on the first
// image that cannot be read.
func Decode(ctx context.Context, input string, max int) ([]read.Decoded, error) {
	files, err := read.List(ctx, input)
	if err != nil {
		return nil, err
	}
	var out []read.Decoded
	var ferr error
	x := read.NewExpander(read.Options{})
	for _, f := range files {
		x.Expand(ctx, f, func(d read.Decoded) { out = append(out, d) },
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

// TeacherPath is the TFLite file of a bundle's teacher in the shared folder:
// the built-in teacher the manifest names (MobileNetV2, MobileNet EdgeTPU).
func TeacherPath(shared string, b *bundle.Bundle) (string, error) {
	bt, ok := teacher.LookupBuiltin(b.Manifest.Teacher.Name)
	if !ok {
		return "", fmt.Errorf("workload: teacher %q is not a built-in teacher", b.Manifest.Teacher.Name)
	}
	return filepath.Join(shared, bt.Path), nil
}

// Head is the bundle's head: student, bank or fused (student for bundles
// from before the heads, which record none).
func Head(b *bundle.Bundle) string {
	if tr := b.Manifest.Training; tr != nil && tr.Head != "" {
		return tr.Head
	}
	return "student"
}

// FLOPs returns the floating-point operations (2 per multiply-add) of one
// S×S image through a bundle's model: the teacher pruned to its feature maps
// (teacher.Program.MACs, convolutions and dense layers) and the head. The
// head is the student (student.Config.ForwardFLOPs, sized from the
// manifest's training record) for the student head, the memory bank's
// nearest-neighbour product (2 · (S/8)² positions · channels · vectors) for
// the bank head, and both for the fused head. The anomaly-map arithmetic
// (normalisation, cosine, upsampling, blur) is not counted. teacherPath is
// the bundle's teacher (TeacherPath).
func FLOPs(b *bundle.Bundle, teacherPath string) (teacherFLOPs, headFLOPs int64, err error) {
	S := b.Manifest.Preprocess.Size
	t, err := teacher.Import(teacherPath, teacher.ImportOptions{Features: b.Manifest.Teacher.Features})
	if err != nil {
		return 0, 0, fmt.Errorf("workload: %w", err)
	}
	p, err := t.Program.Prune(t.Features[:]...)
	if err != nil {
		return 0, 0, fmt.Errorf("workload: %w", err)
	}
	tr, head := b.Manifest.Training, Head(b)
	if head == "student" || head == "fused" {
		cfg := student.DefaultConfig()
		cfg.Channels = t.FeatureChannels()
		if tr != nil && len(tr.Student) > 0 {
			if err := json.Unmarshal(tr.Student, &cfg); err != nil {
				return 0, 0, fmt.Errorf("workload: manifest student config: %w", err)
			}
		}
		headFLOPs += cfg.ForwardFLOPs(S)
	}
	if head == "bank" || head == "fused" {
		if tr == nil || tr.BankSize == 0 || len(tr.BankChannels) == 0 {
			return 0, 0, fmt.Errorf("workload: %s head without bank_size and bank_channels in model.json", head)
		}
		c := 0
		for _, n := range tr.BankChannels {
			c += n
		}
		headFLOPs += 2 * int64(S/8) * int64(S/8) * int64(c) * int64(tr.BankSize)
	}
	return 2 * p.MACs(S, S), headFLOPs, nil
}
