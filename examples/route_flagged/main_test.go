package main

import (
	"context"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/inference/inferencetest"
)

func TestMain(m *testing.M) { ptest.Main(m) }

// writePNG writes a white 64×64 image, with a black square when dark.
func writePNG(t *testing.T, p string, dark bool) {
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	if dark {
		for y := 20; y < 36; y++ {
			for x := 20; x < 36; x++ {
				img.SetGray(x, y, color.Gray{})
			}
		}
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}

// TestRoute: the test bundle scores dark pixels high (threshold 0.5), so the
// PNG with a black square and the MRI slices (black background) are
// flagged, the white PNG is not; every file of a flagged study is copied
// once into the study's folder.
func TestRoute(t *testing.T) {
	root := t.TempDir()
	in := filepath.Join(root, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		t.Fatal(err)
	}
	writePNG(t, filepath.Join(in, "white.png"), false)
	writePNG(t, filepath.Join(in, "spot.png"), true)
	src := shared.MustPath(t, "data", "medical", "lgg_dicom", "series", "TCGA_HT_7473_19970826")
	for _, n := range []string{"IM0010.dcm", "IM0011.dcm"} {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(in, "mr"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, "mr", n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	model := filepath.Join(root, "bundle")
	if err := inferencetest.WriteBundle(model, 32); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(root, "flagged")
	ctx := context.Background()
	p, s := beam.NewPipelineWithRoot()
	if err := Build(ctx, s, Config{Model: model, Input: in, Flagged: dest, StudyScore: "max"}); err != nil {
		t.Fatal(err)
	}
	if err := beamx.Run(ctx, p); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := filepath.Walk(dest, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			r, _ := filepath.Rel(dest, p)
			got = append(got, r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	// The DICOM files share one study (their StudyInstanceUID folder).
	if len(got) != 3 || got[len(got)-1] != "spot.png/spot.png" {
		t.Fatalf("routed %v, want spot.png and the two MR slices", got)
	}
	if filepath.Dir(got[0]) != filepath.Dir(got[1]) || filepath.Base(got[0]) != "IM0010.dcm" || filepath.Base(got[1]) != "IM0011.dcm" {
		t.Errorf("MR slices routed to %v, want one study folder", got[:2])
	}
}
