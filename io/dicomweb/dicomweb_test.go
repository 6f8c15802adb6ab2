package dicomweb

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/decode"
	"github.com/multiad/multiad/io/dicomweb/dicomwebtest"
	"github.com/multiad/multiad/io/dicomwrite"
	"github.com/multiad/multiad/io/pixels"
	"github.com/multiad/multiad/io/storage"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		uri, base, study, series, inst, query string
		err                                   bool
	}{
		{uri: "dicomweb+http://127.0.0.1:8042/dicom-web", base: "http://127.0.0.1:8042/dicom-web"},
		{uri: "dicomweb://pacs.example.org/", base: "https://pacs.example.org"},
		{uri: "dicomweb+https://h/a/b?StudyDate=20020101-20021231&ModalitiesInStudy=MR", base: "https://h/a/b", query: "ModalitiesInStudy=MR&StudyDate=20020101-20021231"},
		{uri: "dicomweb+http://h/dw/studies/1.2/series/1.3/instances/1.4", base: "http://h/dw", study: "1.2", series: "1.3", inst: "1.4"},
		{uri: "dicomweb+http://h/dw/studies/1.2?Modality=MR", base: "http://h/dw", study: "1.2", query: "Modality=MR"},
		// Google Cloud Healthcare API: the base itself contains "studies"-free segments.
		{uri: "dicomweb://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies/1.2",
			base: "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb", study: "1.2"},
		// A base path segment named "studies" (a DICOM store called so).
		{uri: "dicomweb://h/stores/studies/dicomWeb/studies/1.2", base: "https://h/stores/studies/dicomWeb", study: "1.2"},
		{uri: "http://h/dw", err: true},
		{uri: "dicomweb:///dw", err: true},
		{uri: "dicomweb+http://u:p@h/dw", err: true},
		{uri: "dicomweb+http://h/dw/studies/1.2/series/1.3/instances/1.4?x=1", err: true},
		{uri: "dicomweb+http://h/dw/studies/abc", err: true},
	} {
		l, err := Parse(c.uri)
		if c.err {
			if err == nil {
				t.Errorf("%s: no error", c.uri)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if l.Base != c.base || l.Study != c.study || l.Series != c.series || l.Instance != c.inst || l.Query.Encode() != c.query {
			t.Errorf("%s: got %+v", c.uri, l)
		}
		if c.inst != "" && l.String() != c.uri {
			t.Errorf("String() = %s, want %s", l.String(), c.uri)
		}
	}
}

// lggFiles returns the lgg_dicom files of the first n patients (all if n <= 0).
func lggFiles(t testing.TB, n int) []string {
	dirs, _ := filepath.Glob(filepath.Join(shared.MustPath(t, "data", "medical", "lgg_dicom", "series"), "*"))
	if n > 0 && len(dirs) > n {
		dirs = dirs[:n]
	}
	var files []string
	for _, d := range dirs {
		f, _ := filepath.Glob(filepath.Join(d, "*.dcm"))
		files = append(files, f...)
	}
	if len(files) == 0 {
		t.Fatal("no lgg_dicom files")
	}
	return files
}

// fastDefault makes the process-wide client retry quickly for the test.
func fastDefault(t *testing.T) {
	c := Default()
	old := *c
	c.Backoff, c.MaxBackoff, c.Retries = time.Millisecond, 4*time.Millisecond, 3
	t.Cleanup(func() { *c = old })
}

// TestStorageRoundTrip lists a fake archive through io/storage with
// filters and decodes every instance through decode.URI, comparing with
// the files it was loaded from.
func TestStorageRoundTrip(t *testing.T) {
	fastDefault(t)
	srv := dicomwebtest.New()
	defer srv.Close()
	files := lggFiles(t, 2)
	bySOP := map[string]string{}
	studies := map[string]dicomwrite.Source{}
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
		studies[src.StudyInstanceUID] = src
		if err := srv.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	all, err := storage.List(ctx, srv.Base())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(files) {
		t.Fatalf("listed %d instances, want %d", len(all), len(files))
	}
	// A filter on one patient's ID and a date range, through Glob (the
	// way transforms/read sees a URI with '?').
	var one dicomwrite.Source
	for _, s := range studies {
		one = s
		break
	}
	q := srv.Base() + "?PatientID=" + one.PatientID + "&StudyDate=19000101-21001231&ModalitiesInStudy=MR"
	sel, err := storage.Glob(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(sel) == 0 || len(sel) >= len(all) {
		t.Fatalf("filter selected %d of %d", len(sel), len(all))
	}
	for _, u := range sel {
		if !strings.Contains(u, "/studies/"+one.StudyInstanceUID+"/") {
			t.Errorf("%s is outside study %s", u, one.StudyInstanceUID)
		}
	}
	if none, err := storage.Glob(ctx, srv.Base()+"?ModalitiesInStudy=CT"); err != nil || len(none) != 0 {
		t.Errorf("CT filter: %v, %v", none, err)
	}
	// Every instance decodes to the same pixels as its file.
	for _, u := range all[:len(all):len(all)] {
		l, _ := Parse(u)
		imgs, err := decode.URI(ctx, u, pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := decode.URI(ctx, bySOP[l.Instance], pixels.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 1 || !bytes.Equal(imgs[0].Data, ref[0].Data) || imgs[0].Meta.Identity != ref[0].Meta.Identity {
			t.Fatalf("%s: decoded differently from %s", u, bySOP[l.Instance])
		}
	}
	if _, err := storage.Stat(ctx, all[0]); err != nil {
		t.Errorf("Stat: %v", err)
	}
	l, _ := Parse(all[0])
	missing := l.InstanceURI(l.Study, l.Series, "1.2.3.4")
	if _, err := storage.Stat(ctx, missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing instance: %v", err)
	}
	if _, err := storage.ReadFile(ctx, missing, 0); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("reading a missing instance: %v", err)
	}
}

func testClient() *Client {
	c := NewClient()
	c.Backoff, c.MaxBackoff = time.Millisecond, 4*time.Millisecond
	return c
}

// TestRetry checks retries on 5xx, 429 and dropped connections, no retry
// on 4xx, and the bound on retries.
func TestRetry(t *testing.T) {
	srv := dicomwebtest.New()
	defer srv.Close()
	files := lggFiles(t, 1)
	b, _ := os.ReadFile(files[0])
	if err := srv.Add(b); err != nil {
		t.Fatal(err)
	}
	src, _ := dicomwrite.ReadSource(b)
	base, _ := Parse(srv.Base())
	inst, _ := Parse(base.InstanceURI(src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID))
	ctx := context.Background()
	c := testClient()
	c.Retries = 3

	for _, codes := range [][]int{{503}, {429, 500}, {0, 502, 504}} {
		srv.Fail(codes...)
		n := len(srv.Requests())
		got, err := c.Retrieve(ctx, inst)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("after failures %v: %v", codes, err)
		}
		if r := len(srv.Requests()) - n; r != len(codes)+1 {
			t.Errorf("failures %v: %d requests, want %d", codes, r, len(codes)+1)
		}
	}
	// Too many failures: the last error, after Retries retries.
	srv.Fail(503, 503, 503, 503)
	n := len(srv.Requests())
	if _, err := c.Retrieve(ctx, inst); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "3 retries") {
		t.Errorf("exhausted retries: %v", err)
	}
	if r := len(srv.Requests()) - n; r != 4 {
		t.Errorf("exhausted retries: %d requests, want 4", r)
	}
	// 4xx is final.
	srv.Fail(403)
	n = len(srv.Requests())
	var se *StatusError
	if _, err := c.Retrieve(ctx, inst); !errors.As(err, &se) || se.Code != 403 {
		t.Errorf("403: %v", err)
	}
	if r := len(srv.Requests()) - n; r != 1 {
		t.Errorf("403 retried: %d requests", r)
	}
	// QIDO and STOW retry too.
	srv.Fail(500)
	if got, err := c.List(ctx, base); err != nil || len(got) != 1 {
		t.Errorf("List after a 500: %v, %v", got, err)
	}
	srv.Fail(503)
	if err := c.Store(ctx, base, b); err != nil {
		t.Errorf("Store after a 503: %v", err)
	}
	// A cancelled context stops the backoff.
	c.Backoff = time.Hour
	srv.Fail(503)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Retrieve(cctx, inst); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestTokenAndLimits(t *testing.T) {
	srv := dicomwebtest.New()
	defer srv.Close()
	srv.Token = "s3cret"
	b, _ := os.ReadFile(lggFiles(t, 1)[0])
	if err := srv.Add(b); err != nil {
		t.Fatal(err)
	}
	src, _ := dicomwrite.ReadSource(b)
	base, _ := Parse(srv.Base())
	inst, _ := Parse(base.InstanceURI(src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID))
	ctx := context.Background()
	c := testClient()
	var se *StatusError
	if _, err := c.Retrieve(ctx, inst); !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
		t.Errorf("no token: %v", err)
	}
	c.Token = "s3cret"
	if _, err := c.Retrieve(ctx, inst); err != nil {
		t.Errorf("with token: %v", err)
	}
	c.MaxBytes = int64(len(b) / 2)
	if _, err := c.Retrieve(ctx, inst); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("over the size limit: %v", err)
	}
}

// TestPaging lists more instances than one page holds, with a server that
// pages and one that ignores limit/offset.
func TestPaging(t *testing.T) {
	srv := dicomwebtest.New()
	defer srv.Close()
	files := lggFiles(t, 1)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if err := srv.Add(b); err != nil {
			t.Fatal(err)
		}
	}
	base, _ := Parse(srv.Base())
	for _, ignore := range []bool{false, true} {
		srv.IgnorePaging = ignore
		c := testClient()
		c.PageSize = 7
		c.Parallel = 3
		got, err := c.List(context.Background(), base)
		if err != nil || len(got) != len(files) {
			t.Errorf("ignore paging %v: %d instances (%v), want %d", ignore, len(got), err, len(files))
		}
	}
}

func TestStoreAndMultipart(t *testing.T) {
	srv := dicomwebtest.New()
	defer srv.Close()
	files := lggFiles(t, 1)[:3]
	var data [][]byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		data = append(data, b)
	}
	base, _ := Parse(srv.Base())
	c := testClient()
	if err := c.Store(context.Background(), base, data...); err != nil {
		t.Fatal(err)
	}
	if srv.Len() != 3 {
		t.Errorf("stored %d, want 3", srv.Len())
	}
	if err := c.Store(context.Background(), base, []byte("junk")); err == nil {
		t.Error("storing junk: no error")
	}
	for _, ct := range []string{"text/plain", "multipart/related", "multipart/related; boundary=x", "bad;;"} {
		if _, err := parseMultipart(ct, []byte("--x\r\n\r\nabc\r\n--x--\r\n"), 2); err == nil {
			t.Errorf("%q: no error", ct)
		}
	}
}

func TestQuerySplit(t *testing.T) {
	qs, err := split(map[string][]string{"PatientID": {"P"}, "Modality": {"MR"}, "SOPClassUID": {"1.2"}, "00100010": {"X"}})
	if err != nil || qs["studies"].Get("PatientID") != "P" || qs["studies"].Get("00100010") != "X" ||
		qs["series"].Get("Modality") != "MR" || qs["instances"].Get("SOPClassUID") != "1.2" {
		t.Errorf("split = %v, %v", qs, err)
	}
	if _, err := split(map[string][]string{"limit": {"3"}}); err == nil {
		t.Error("limit in the URI: no error")
	}
}
