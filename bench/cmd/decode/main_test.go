package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/nifti"
	"github.com/multiad/multiad/io/pixels"
)

// TestSmoke runs the harness on two files per group, one run.
func TestSmoke(t *testing.T) {
	root := shared.MustPath(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-shared", root, "-runs", "1", "-max", "2", "-min-secs", "0.01"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bench.decode.dicom_rle.mb_per_s=", "bench.decode.dicom_jpeg_lossless.images_per_s=", "bench.decode.nifti_gz.mb_per_s="} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// benchFiles decodes every file matching pattern under shared with dec.
func benchFiles(b *testing.B, pattern string, dec func([]byte, pixels.Limits) ([]*pixels.Image, error)) {
	paths, _ := filepath.Glob(filepath.Join(shared.MustPath(b), pattern))
	if len(paths) == 0 {
		b.Skip("no files")
	}
	var blobs [][]byte
	var n int64
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		blobs = append(blobs, data)
		n += int64(len(data))
	}
	b.SetBytes(n)
	for b.Loop() {
		for _, d := range blobs {
			if _, err := dec(d, pixels.DefaultLimits); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkNIfTI decodes the lgg_flair volumes (for -cpuprofile).
func BenchmarkNIfTI(b *testing.B) {
	benchFiles(b, "data/medical/lgg_flair/volumes/*.nii.gz", nifti.Decode)
}

// BenchmarkDICOMRLE decodes one RLE lgg_dicom series (for -cpuprofile).
func BenchmarkDICOMRLE(b *testing.B) {
	benchFiles(b, "data/medical/lgg_dicom/series/TCGA_HT_7473_19970826/*.dcm", dicom.Decode)
}
