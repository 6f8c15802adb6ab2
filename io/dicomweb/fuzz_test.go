package dicomweb

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/textproto"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{"dicomweb+http://127.0.0.1:8042/dicom-web?StudyDate=20020101-20021231&ModalitiesInStudy=MR",
		"dicomweb://h/a/studies/1.2/series/3.4/instances/5.6", "dicomweb+https://h/studies/studies/1/series/2", "dicomweb://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		l, err := Parse(uri)
		if err != nil {
			return
		}
		// A parsed location round-trips.
		l2, err := Parse(l.String())
		if err != nil || l2.Base != l.Base || l2.Study != l.Study || l2.Series != l.Series || l2.Instance != l.Instance {
			t.Errorf("%q → %q → %+v, %v", uri, l.String(), l2, err)
		}
	})
}

func FuzzMultipart(f *testing.F) {
	files := lggFiles(f, 1)
	b, _ := os.ReadFile(files[0])
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary("xyz"); err != nil {
		f.Fatal(err)
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/dicom")
	w, err := mw.CreatePart(h)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := w.Write(b[:2048]); err != nil {
		f.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(`multipart/related; type="application/dicom"; boundary=xyz`, buf.Bytes())
	f.Add(`multipart/related; boundary=xyz`, []byte("--xyz\r\n\r\n--xyz--"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		// Must not panic; fuzzed bodies mostly fail, but a success keeps the
		// promise of at least min parts.
		if parts, err := parseMultipart(ct, body, 1); err == nil && len(parts) < 1 {
			t.Errorf("%d parts and no error, want at least 1", len(parts))
		}
		var ds []Dataset
		if json.Unmarshal(body, &ds) == nil {
			for _, d := range ds {
				d.String(TagSOPInstanceUID)
			}
		}
	})
}
