package dicomweb

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/dicomweb/dicomwebtest"
	"github.com/multiad/multiad/io/dicomwrite"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/storage"
)

// TestOrthanc uploads the lgg_dicom series to a real Orthanc with
// STOW-RS, lists them back through io/storage with QIDO-RS filters and
// checks that every instance decodes to the same pixels as its file (they
// come back in their stored transfer syntax: JPEG lossless, RLE and
// explicit little endian).
func TestOrthanc(t *testing.T) {
	root := dicomwebtest.Orthanc(t)
	base := "dicomweb+" + root + "/dicom-web"
	ctx := context.Background()
	files := lggFiles(t, 0)
	bySOP := map[string]string{}
	var data [][]byte
	study := map[string]bool{}
	var pid string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src, err := dicomwrite.ReadSource(b)
		if err != nil {
			t.Fatal(err)
		}
		bySOP[src.SOPInstanceUID] = f
		study[src.StudyInstanceUID] = true
		pid = src.PatientID
		data = append(data, b)
	}
	l, err := Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient()
	for i := 0; i < len(data); i += 20 {
		if err := c.Store(ctx, l, data[i:min(i+20, len(data))]...); err != nil {
			t.Fatalf("STOW-RS: %v", err)
		}
	}
	// The lgg patients' studies, and nothing else the server may hold.
	var all []string
	for s := range study {
		got, err := storage.List(ctx, base+"/studies/"+s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, got...)
	}
	// Orthanc may hold outputs of other tests (secondary captures) in the
	// same studies: keep the MR instances.
	mr, err := storage.Glob(ctx, base+"?ModalitiesInStudy=MR&Modality=MR&StudyDate=19000101-21001231")
	if err != nil {
		t.Fatal(err)
	}
	inMR := map[string]bool{}
	for _, u := range mr {
		inMR[u] = true
	}
	n := 0
	for _, u := range all {
		if !inMR[u] {
			continue
		}
		n++
		il, _ := Parse(u)
		f, ok := bySOP[il.Instance]
		if !ok {
			continue // another MR instance on a shared server
		}
		got, err := decode.URI(ctx, u, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		want, err := decode.URI(ctx, f, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !bytes.Equal(got[0].Data, want[0].Data) || got[0].Meta.TransferSyntax != want[0].Meta.TransferSyntax {
			t.Errorf("%s: decodes differently from %s (%s vs %s)", u, f, got[0].Meta.TransferSyntax, want[0].Meta.TransferSyntax)
		}
		delete(bySOP, il.Instance)
	}
	if len(bySOP) != 0 {
		t.Errorf("%d uploaded instances not listed back", len(bySOP))
	}
	one, err := storage.Glob(ctx, base+"?PatientID="+pid+"&Modality=MR")
	if err != nil || len(one) == 0 || len(one) >= n {
		t.Errorf("PatientID filter: %d of %d (%v)", len(one), n, err)
	}
}
