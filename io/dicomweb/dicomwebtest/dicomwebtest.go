// Package dicomwebtest is a minimal in-memory DICOMweb server for tests:
// QIDO-RS (studies, series, instances; a few matching keys), WADO-RS
// instance retrieval and STOW-RS, with injectable failures and an optional
// bearer token.
package dicomwebtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/multiad/multiad/io/dicomwrite"
)

// Server is a fake DICOMweb service at URL + "/dicom-web".
type Server struct {
	*httptest.Server
	// Token, when set, is the bearer token every request must carry.
	Token string

	mu        sync.Mutex
	instances map[string]*instance // by SOP Instance UID
	fail      []int                // status codes for the next requests
	requests  []string             // "METHOD path" of every request
	// IgnorePaging makes QIDO ignore limit and offset.
	IgnorePaging bool
}

type instance struct {
	data []byte
	src  dicomwrite.Source
}

// New starts a server; Close it when done.
func New() *Server {
	s := &Server{instances: map[string]*instance{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Base returns the DICOMweb base as a dicomweb+http:// URI.
func (s *Server) Base() string { return "dicomweb+" + s.URL + "/dicom-web" }

// Add stores Part-10 instances directly.
func (s *Server) Add(data ...[]byte) error {
	for _, d := range data {
		src, err := dicomwrite.ReadSource(d)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.instances[src.SOPInstanceUID] = &instance{data: d, src: src}
		s.mu.Unlock()
	}
	return nil
}

// Fail makes the next requests answer with the given status codes, one
// each (0 closes the connection without answering).
func (s *Server) Fail(codes ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = append(s.fail, codes...)
}

// Requests returns "METHOD path" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Instance returns a stored instance's bytes.
func (s *Server) Instance(sop string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[sop]
	if !ok {
		return nil, false
	}
	return in.data, true
}

// Len returns the number of stored instances.
func (s *Server) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.instances)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	code := -1
	if len(s.fail) > 0 {
		code, s.fail = s.fail[0], s.fail[1:]
	}
	s.mu.Unlock()
	switch {
	case code == 0:
		// An injected dropped connection: the client sees the connection
		// close without a response. A writer that cannot be hijacked (never
		// with httptest.Server) answers 500 instead of serving the request.
		hj, ok := w.(http.Hijacker)
		if !ok {
			http.Error(w, "injected failure: cannot drop the connection", http.StatusInternalServerError)
			return
		}
		c, _, err := hj.Hijack()
		if err != nil {
			http.Error(w, "injected failure: "+err.Error(), http.StatusInternalServerError)
			return
		}
		c.Close()
		return
	case code > 0:
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		http.Error(w, "injected failure", code)
		return
	}
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	p, ok := strings.CutPrefix(r.URL.Path, "/dicom-web/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	seg := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case r.Method == http.MethodPost && (len(seg) == 1 || len(seg) == 2) && seg[0] == "studies":
		s.stow(w, r)
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case len(seg) == 1 && seg[0] == "studies":
		s.qido(w, r, "", "", "study")
	case len(seg) == 3 && seg[0] == "studies" && seg[2] == "series":
		s.qido(w, r, seg[1], "", "series")
	case len(seg) == 5 && seg[0] == "studies" && seg[2] == "series" && seg[4] == "instances":
		s.qido(w, r, seg[1], seg[3], "instance")
	case len(seg) == 6 && seg[0] == "studies" && seg[2] == "series" && seg[4] == "instances":
		s.wado(w, r, seg[1], seg[3], seg[5])
	default:
		http.NotFound(w, r)
	}
}

// match implements the QIDO matching the tests use: exact, '*' suffix
// wildcard, and date ranges A-B.
func match(v, pattern string) bool {
	if pattern == "" {
		return true
	}
	if a, b, ok := strings.Cut(pattern, "-"); ok && len(v) == 8 {
		return (a == "" || v >= a) && (b == "" || v <= b)
	}
	if pre, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(v, pre)
	}
	return v == pattern
}

func (s *Server) qido(w http.ResponseWriter, r *http.Request, study, series, level string) {
	q := r.URL.Query()
	keyOf := func(in *instance) string {
		switch level {
		case "study":
			return in.src.StudyInstanceUID
		case "series":
			return in.src.SeriesInstanceUID
		}
		return in.src.SOPInstanceUID
	}
	s.mu.Lock()
	// Modalities of each study, for ModalitiesInStudy.
	mods := map[string]string{}
	for _, in := range s.instances {
		mods[in.src.StudyInstanceUID] += `\` + in.src.Modality
	}
	groups := map[string]*instance{}
	for _, in := range s.instances {
		src := in.src
		if (study != "" && src.StudyInstanceUID != study) || (series != "" && src.SeriesInstanceUID != series) {
			continue
		}
		ok := match(src.PatientID, q.Get("PatientID")) && match(src.StudyDate, q.Get("StudyDate")) &&
			match(src.StudyInstanceUID, q.Get("StudyInstanceUID")) && match(src.SeriesInstanceUID, q.Get("SeriesInstanceUID")) &&
			match(src.SOPInstanceUID, q.Get("SOPInstanceUID")) && match(src.Modality, q.Get("Modality"))
		if m := q.Get("ModalitiesInStudy"); m != "" && !strings.Contains(mods[src.StudyInstanceUID]+`\`, `\`+m+`\`) {
			ok = false
		}
		if ok {
			groups[keyOf(in)] = in
		}
	}
	s.mu.Unlock()
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !s.IgnorePaging {
		off, _ := strconv.Atoi(q.Get("offset"))
		keys = keys[min(off, len(keys)):]
		if lim, err := strconv.Atoi(q.Get("limit")); err == nil && lim < len(keys) {
			keys = keys[:lim]
		}
	}
	out := []map[string]any{}
	str := func(vr, v string) map[string]any { return map[string]any{"vr": vr, "Value": []string{v}} }
	for _, k := range keys {
		src := groups[k].src
		d := map[string]any{"0020000D": str("UI", src.StudyInstanceUID), "00100020": str("LO", src.PatientID)}
		if level != "study" {
			d["0020000E"] = str("UI", src.SeriesInstanceUID)
			d["00080060"] = str("CS", src.Modality)
		}
		if level == "instance" {
			d["00080018"] = str("UI", src.SOPInstanceUID)
			d["00080016"] = str("UI", src.SOPClassUID)
		}
		out = append(out, d)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) wado(w http.ResponseWriter, r *http.Request, study, series, sop string) {
	s.mu.Lock()
	in, ok := s.instances[sop]
	s.mu.Unlock()
	if !ok || in.src.StudyInstanceUID != study || in.src.SeriesInstanceUID != series {
		http.NotFound(w, r)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "multipart/related") {
		http.Error(w, "want multipart/related", http.StatusNotAcceptable)
		return
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", "application/dicom")
	pw, err := mw.CreatePart(h)
	if err == nil {
		_, err = pw.Write(in.data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	reply(w, http.StatusOK, `multipart/related; type="application/dicom"; boundary=`+mw.Boundary(), buf.Bytes())
}

func (s *Server) stow(w http.ResponseWriter, r *http.Request) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["boundary"] == "" {
		http.Error(w, "want multipart/related", http.StatusUnsupportedMediaType)
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var refs, fails []map[string]any
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		data, err := io.ReadAll(p)
		if err != nil {
			http.Error(w, "reading a part: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.Add(data); err != nil {
			fails = append(fails, map[string]any{"00081197": map[string]any{"vr": "US", "Value": []int{0xC000}}})
			continue
		}
		src, _ := dicomwrite.ReadSource(data)
		refs = append(refs, map[string]any{"00081155": map[string]any{"vr": "UI", "Value": []string{src.SOPInstanceUID}}})
	}
	res := map[string]any{}
	if len(refs) > 0 {
		res["00081199"] = map[string]any{"vr": "SQ", "Value": refs}
	}
	code := http.StatusOK
	if len(fails) > 0 {
		res["00081198"] = map[string]any{"vr": "SQ", "Value": fails}
		code = http.StatusAccepted
		if len(refs) == 0 {
			code = http.StatusConflict
		}
	}
	writeJSON(w, code, res)
}

// writeJSON answers code with v (and a newline) as application/dicom+json.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	reply(w, code, "application/dicom+json", buf.Bytes())
}

// reply answers code with body of content type ct.
func reply(w http.ResponseWriter, code int, ct string, body []byte) {
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	// The status is sent: a failed write means the client has gone, and it
	// sees the error itself.
	_, _ = w.Write(body)
}

// String describes the server.
func (s *Server) String() string {
	return fmt.Sprintf("dicomwebtest(%s, %d instances)", s.URL, s.Len())
}

// OrthancEnv names the environment variable with the HTTP root of an
// Orthanc server with the DICOMweb plugin at /dicom-web (as started by
// scripts/orthanc.sh), e.g. http://127.0.0.1:8042.
const OrthancEnv = "MULTIAD_ORTHANC_URL"

// OrthancDefault is where scripts/orthanc.sh starts Orthanc.
const OrthancDefault = "http://127.0.0.1:8042"

// TB is the part of testing.TB that Orthanc uses.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Orthanc returns the HTTP root of the test Orthanc. It skips the test
// only when MULTIAD_ORTHANC_URL is unset and nothing answers at
// OrthancDefault; when the variable is set, an unreachable server fails
// the test.
func Orthanc(t TB) string {
	t.Helper()
	u := strings.TrimRight(os.Getenv(OrthancEnv), "/")
	set := u != ""
	if !set {
		u = OrthancDefault
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(u + "/system")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return u
		}
		err = fmt.Errorf("GET /system: %s", resp.Status)
	}
	if !set {
		t.Skipf("no Orthanc at %s (%v); start one with scripts/orthanc.sh start or set %s", u, err, OrthancEnv)
	}
	t.Fatalf("%s=%s: %v", OrthancEnv, u, err)
	return ""
}
