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
	mw.SetBoundary("xyz")
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/dicom")
	w, _ := mw.CreatePart(h)
	w.Write(b[:2048])
	mw.Close()
	f.Add(`multipart/related; type="application/dicom"; boundary=xyz`, buf.Bytes())
	f.Add(`multipart/related; boundary=xyz`, []byte("--xyz\r\n\r\n--xyz--"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		parseMultipart(ct, body, 1) // must not panic
		var ds []Dataset
		if json.Unmarshal(body, &ds) == nil {
			for _, d := range ds {
				d.String(TagSOPInstanceUID)
			}
		}
	})
}
