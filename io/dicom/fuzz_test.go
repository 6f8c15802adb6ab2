package dicom

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
)

// maxSeed caps the size of the shared files used as fuzz seeds.
const maxSeed = 48 << 10

// FuzzDecode checks that arbitrary input never panics and that every image
// returned is valid. Seeds are the small DICOM files of the shared set.
func FuzzDecode(f *testing.F) {
	if dir, err := shared.Path("data", "decoders", "dicom"); err == nil {
		for _, pat := range []string{"*.dcm", "pydicom_data/*.dcm"} {
			files, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, p := range files {
				if st, err := os.Stat(p); err == nil && st.Size() <= maxSeed {
					if b, err := os.ReadFile(p); err == nil {
						f.Add(b)
					}
				}
			}
		}
	}
	lim := pixels.Limits{MaxPixels: 1 << 20, MaxVoxels: 1 << 22}
	f.Fuzz(func(t *testing.T, data []byte) {
		catchPanics = false
		defer func() { catchPanics = true }()
		// A watchdog turns hangs (seen in CharLS) into failures the fuzzer
		// records.
		type result struct {
			imgs []*pixels.Image
			err  error
		}
		done := make(chan result, 1)
		go func() {
			imgs, err := Decode(data, lim)
			done <- result{imgs, err}
		}()
		var imgs []*pixels.Image
		var err error
		select {
		case r := <-done:
			imgs, err = r.imgs, r.err
		case <-time.After(20 * time.Second):
			panic("Decode did not return within 20 s")
		}
		if err != nil {
			return
		}
		if len(imgs) == 0 {
			t.Fatal("no images and no error")
		}
		for _, m := range imgs {
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			if int64(m.Len()) > lim.MaxPixels {
				t.Fatalf("image of %d elements passed the limit", m.Len())
			}
		}
		if imgs[0].Meta.Photometric == "PALETTE COLOR" {
			if p, err := ReadPalette(data); err == nil {
				if _, err := p.Apply(imgs[0]); err != nil {
					t.Logf("apply: %v", err)
				}
			}
		}
	})
}
