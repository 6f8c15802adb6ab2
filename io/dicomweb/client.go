package dicomweb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// TokenEnv is the environment variable holding a bearer token.
const TokenEnv = "MULTIAD_DICOMWEB_TOKEN"

// Client talks to DICOMweb services. The zero value is not usable; use
// NewClient or Default.
type Client struct {
	// HTTP sends the requests.
	HTTP *http.Client
	// Token, when set, is sent as "Authorization: Bearer Token".
	Token string
	// TokenSource, when set and Token is empty, supplies bearer tokens.
	TokenSource oauth2.TokenSource
	// Retries is how many times a failed request is retried (network
	// errors, 429, 5xx); Backoff is the first wait, doubled each time up to
	// MaxBackoff.
	Retries             int
	Backoff, MaxBackoff time.Duration
	// MaxBytes bounds every response body (QIDO JSON, WADO instance).
	MaxBytes int64
	// Parallel bounds the concurrent requests of List.
	Parallel int
	// PageSize is the QIDO-RS limit per request; List pages with offset.
	PageSize int
}

// NewClient returns a client with the defaults: 5 retries from 200 ms up
// to 10 s, 1 GiB responses, 8 concurrent requests, pages of 1000.
func NewClient() *Client {
	return &Client{
		HTTP:    &http.Client{Timeout: 5 * time.Minute},
		Retries: 5, Backoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second,
		MaxBytes: 1 << 30, Parallel: 8, PageSize: 1000,
	}
}

var (
	defaultMu     sync.Mutex
	defaultClient *Client
	googleTS      oauth2.TokenSource
	googleErr     error
)

// Default returns the process-wide client used by the io/storage schemes,
// created on first use with the token from MULTIAD_DICOMWEB_TOKEN.
func Default() *Client {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultClient == nil {
		defaultClient = NewClient()
		defaultClient.Token = strings.TrimSpace(os.Getenv(TokenEnv))
	}
	return defaultClient
}

// SetToken sets the bearer token of the process-wide client (a --flag
// given to the driver). Worker processes of a distributed runner do not
// see it: give them MULTIAD_DICOMWEB_TOKEN or Google credentials instead.
func SetToken(token string) { Default().Token = strings.TrimSpace(token) }

// authorize adds the Authorization header.
func (c *Client) authorize(ctx context.Context, req *http.Request) error {
	tok := c.Token
	ts := c.TokenSource
	if tok == "" && ts == nil && strings.HasSuffix(req.URL.Hostname(), "healthcare.googleapis.com") {
		defaultMu.Lock()
		if googleTS == nil && googleErr == nil {
			googleTS, googleErr = google.DefaultTokenSource(context.Background(), "https://www.googleapis.com/auth/cloud-platform")
		}
		ts, err := googleTS, googleErr
		defaultMu.Unlock()
		if err != nil {
			return fmt.Errorf("dicomweb: Google credentials for %s: %w (or set %s)", req.URL.Host, err, TokenEnv)
		}
		return setToken(req, ts)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
	if ts != nil {
		return setToken(req, ts)
	}
	return nil
}

func setToken(req *http.Request, ts oauth2.TokenSource) error {
	t, err := ts.Token()
	if err != nil {
		return fmt.Errorf("dicomweb: getting a token: %w", err)
	}
	t.SetAuthHeader(req)
	return nil
}

// StatusError is an HTTP error response.
type StatusError struct {
	Method, URL string
	Code        int
	// Body is the start of the response body.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("dicomweb: %s %s: %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable reports whether a response code is worth retrying.
func retryable(code int) bool { return code == http.StatusTooManyRequests || code >= 500 }

// do sends a request built by mk (called once per attempt) and returns the
// body of a 2xx response, at most c.MaxBytes long. It retries network
// errors, 429 and 5xx with exponential backoff.
func (c *Client) do(ctx context.Context, mk func() (*http.Request, error)) (*http.Response, []byte, error) {
	wait := c.Backoff
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	var last error
	for attempt := 0; ; attempt++ {
		req, err := mk()
		if err != nil {
			return nil, nil, fmt.Errorf("dicomweb: %w", err)
		}
		req = req.WithContext(ctx)
		if err := c.authorize(ctx, req); err != nil {
			return nil, nil, err
		}
		resp, body, err := c.once(req)
		if err == nil {
			return resp, body, nil
		}
		last = err
		var se *StatusError
		retry := !errors.As(err, &se) || retryable(se.Code)
		if !retry || attempt >= c.Retries || ctx.Err() != nil {
			break
		}
		d := wait
		if resp != nil {
			if s, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && s >= 0 {
				d = min(time.Duration(s)*time.Second, max(c.MaxBackoff, wait))
			}
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("dicomweb: %w (after %v)", ctx.Err(), last)
		case <-time.After(d):
		}
		wait *= 2
		if c.MaxBackoff > 0 && wait > c.MaxBackoff {
			wait = c.MaxBackoff
		}
	}
	if c.Retries > 0 {
		var se *StatusError
		if !errors.As(last, &se) || retryable(se.Code) {
			return nil, nil, fmt.Errorf("%w (gave up after %d retries)", last, c.Retries)
		}
	}
	return nil, nil, last
}

// once sends one request and reads the body.
func (c *Client) once(req *http.Request) (*http.Response, []byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("dicomweb: %s %s: %w", req.Method, redact(req.URL), err)
	}
	defer resp.Body.Close()
	limit := c.MaxBytes
	if limit <= 0 {
		limit = 1 << 30
	}
	if resp.ContentLength > limit {
		return resp, nil, &StatusError{Method: req.Method, URL: redact(req.URL), Code: resp.StatusCode,
			Body: fmt.Sprintf("response of %d bytes exceeds the limit of %d", resp.ContentLength, limit)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return resp, nil, fmt.Errorf("dicomweb: %s %s: reading response: %w", req.Method, redact(req.URL), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b := strings.TrimSpace(string(body))
		if len(b) > 300 {
			b = b[:300] + "…"
		}
		return resp, nil, &StatusError{Method: req.Method, URL: redact(req.URL), Code: resp.StatusCode, Body: b}
	}
	if int64(len(body)) > limit {
		return resp, nil, fmt.Errorf("dicomweb: %s %s: response exceeds the limit of %d bytes", req.Method, redact(req.URL), limit)
	}
	return resp, body, nil
}

// redact formats u for error messages: QIDO queries may carry patient IDs,
// so only the query's keys are shown.
func redact(u *url.URL) string {
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	if u.RawQuery != "" {
		var keys []string
		for k := range u.Query() {
			keys = append(keys, k)
		}
		s += "?" + strings.Join(keys, "&")
	}
	return s
}

// Dataset is one DICOM JSON object (PS3.18 F.2): tag "GGGGEEEE" → element.
type Dataset map[string]Element

// Element is one DICOM JSON attribute.
type Element struct {
	VR    string            `json:"vr"`
	Value []json.RawMessage `json:"Value,omitempty"`
}

// String returns the first value of tag as a string ("" when absent);
// person names give their Alphabetic form.
func (d Dataset) String(tag string) string {
	e, ok := d[tag]
	if !ok || len(e.Value) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(e.Value[0], &s) == nil {
		return s
	}
	var pn struct{ Alphabetic string }
	if json.Unmarshal(e.Value[0], &pn) == nil && pn.Alphabetic != "" {
		return pn.Alphabetic
	}
	var n json.Number
	if json.Unmarshal(e.Value[0], &n) == nil {
		return n.String()
	}
	return ""
}

// Attribute tags used here.
const (
	TagStudyInstanceUID  = "0020000D"
	TagSeriesInstanceUID = "0020000E"
	TagSOPInstanceUID    = "00080018"
	TagSOPClassUID       = "00080016"
	TagInstanceNumber    = "00200013"
)

// Query runs one QIDO-RS request (GET url with the query) and returns the
// matches. It pages with limit/offset when the server honours them.
func (c *Client) Query(ctx context.Context, u string, q url.Values, key string) ([]Dataset, error) {
	page := c.PageSize
	if page <= 0 {
		page = 1000
	}
	var out []Dataset
	seen := map[string]bool{}
	for offset := 0; ; {
		qq := url.Values{}
		for k, v := range q {
			qq[k] = v
		}
		qq.Set("limit", strconv.Itoa(page))
		if offset > 0 {
			qq.Set("offset", strconv.Itoa(offset))
		}
		full := u
		if len(qq) > 0 {
			full += "?" + qq.Encode()
		}
		resp, body, err := c.do(ctx, func() (*http.Request, error) {
			r, err := http.NewRequest(http.MethodGet, full, nil)
			if err == nil {
				r.Header.Set("Accept", "application/dicom+json")
			}
			return r, err
		})
		if err != nil {
			return nil, err
		}
		var ds []Dataset
		if resp.StatusCode != http.StatusNoContent && len(bytes.TrimSpace(body)) > 0 {
			if err := json.Unmarshal(body, &ds); err != nil {
				return nil, fmt.Errorf("dicomweb: GET %s: bad QIDO-RS response: %w", redact(resp.Request.URL), err)
			}
		}
		fresh := 0
		for _, d := range ds {
			k := d.String(key)
			if k == "" {
				return nil, fmt.Errorf("dicomweb: GET %s: a match without %s", redact(resp.Request.URL), key)
			}
			if !seen[k] {
				seen[k] = true
				fresh++
				out = append(out, d)
			}
		}
		// A full page that brought something new may have a successor; a
		// server that ignores limit or offset ends the loop here.
		if len(ds) != page || fresh == 0 {
			return out, nil
		}
		offset += page
	}
}

// Instance is one listed instance.
type Instance struct {
	Study, Series, SOP string
}

// List runs the QIDO-RS queries for the scope and query of l and returns
// its instances, sorted by study, series and instance UID.
func (c *Client) List(ctx context.Context, l Location) ([]Instance, error) {
	if l.IsInstance() {
		return []Instance{{l.Study, l.Series, l.Instance}}, nil
	}
	qs, err := split(l.Query)
	if err != nil {
		return nil, err
	}
	studies := []string{l.Study}
	if l.Study == "" || len(qs["studies"]) > 0 {
		q := qs["studies"]
		if l.Study != "" {
			q.Set("StudyInstanceUID", l.Study)
		}
		ds, err := c.Query(ctx, l.Base+"/studies", q, TagStudyInstanceUID)
		if err != nil {
			return nil, err
		}
		studies = studies[:0]
		for _, d := range ds {
			studies = append(studies, d.String(TagStudyInstanceUID))
		}
	}
	type series struct{ study, series string }
	var all []series
	var mu sync.Mutex
	err = c.each(ctx, len(studies), func(i int) error {
		st := studies[i]
		if l.Series != "" && len(qs["series"]) == 0 {
			mu.Lock()
			all = append(all, series{st, l.Series})
			mu.Unlock()
			return nil
		}
		q := qs["series"]
		if l.Series != "" {
			q = cloneValues(q)
			q.Set("SeriesInstanceUID", l.Series)
		}
		ds, err := c.Query(ctx, l.Base+"/studies/"+st+"/series", q, TagSeriesInstanceUID)
		if err != nil {
			return err
		}
		mu.Lock()
		for _, d := range ds {
			all = append(all, series{st, d.String(TagSeriesInstanceUID)})
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Instance
	err = c.each(ctx, len(all), func(i int) error {
		s := all[i]
		ds, err := c.Query(ctx, l.Base+"/studies/"+s.study+"/series/"+s.series+"/instances", qs["instances"], TagSOPInstanceUID)
		if err != nil {
			return err
		}
		mu.Lock()
		for _, d := range ds {
			out = append(out, Instance{s.study, s.series, d.String(TagSOPInstanceUID)})
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortInstances(out)
	return out, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// each runs f(0..n-1) with at most c.Parallel at once and returns the
// first error.
func (c *Client) each(ctx context.Context, n int, f func(int) error) error {
	p := c.Parallel
	if p <= 0 {
		p = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, p)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}(i)
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// acceptDICOM asks for the instance as stored (any transfer syntax).
const acceptDICOM = `multipart/related; type="application/dicom"; transfer-syntax=*`

// Retrieve fetches one instance with WADO-RS and returns its Part-10 bytes.
func (c *Client) Retrieve(ctx context.Context, l Location) ([]byte, error) {
	if !l.IsInstance() {
		return nil, fmt.Errorf("dicomweb: %s does not name an instance", l)
	}
	u := l.URL()
	resp, body, err := c.do(ctx, func() (*http.Request, error) {
		r, err := http.NewRequest(http.MethodGet, u, nil)
		if err == nil {
			r.Header.Set("Accept", acceptDICOM)
		}
		return r, err
	})
	var se *StatusError
	if errors.As(err, &se) && (se.Code == http.StatusNotAcceptable || se.Code == http.StatusBadRequest) {
		// Servers that do not know transfer-syntax=* send their default.
		resp, body, err = c.do(ctx, func() (*http.Request, error) {
			r, err := http.NewRequest(http.MethodGet, u, nil)
			if err == nil {
				r.Header.Set("Accept", `multipart/related; type="application/dicom"`)
			}
			return r, err
		})
	}
	if err != nil {
		return nil, err
	}
	parts, err := parseMultipart(resp.Header.Get("Content-Type"), body, 1)
	if err != nil {
		return nil, fmt.Errorf("dicomweb: GET %s: %w", u, err)
	}
	return parts[0], nil
}

// parseMultipart splits a multipart/related body into its parts' bodies;
// it wants at least min parts.
func parseMultipart(contentType string, body []byte, min int) ([][]byte, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("bad Content-Type %q: %w", contentType, err)
	}
	if mt == "application/dicom" {
		return [][]byte{body}, nil
	}
	if !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return nil, fmt.Errorf("Content-Type %q: want multipart/related with a boundary", contentType)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bad multipart body: %w", err)
		}
		if ct := p.Header.Get("Content-Type"); ct != "" {
			if pt, _, _ := mime.ParseMediaType(ct); pt != "application/dicom" {
				return nil, fmt.Errorf("part of type %q, want application/dicom", ct)
			}
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("bad multipart body: %w", err)
		}
		out = append(out, b)
	}
	if len(out) < min {
		return nil, fmt.Errorf("multipart body has %d parts, want at least %d", len(out), min)
	}
	return out, nil
}

// Store sends Part-10 instances with STOW-RS to base (a study-less
// Location) and returns an error naming any instance the server refused.
func (c *Client) Store(ctx context.Context, l Location, instances ...[]byte) error {
	if len(instances) == 0 {
		return nil
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, in := range instances {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/dicom")
		w, err := mw.CreatePart(h)
		if err != nil {
			return fmt.Errorf("dicomweb: %w", err)
		}
		if _, err := w.Write(in); err != nil {
			return fmt.Errorf("dicomweb: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return fmt.Errorf("dicomweb: %w", err)
	}
	body := buf.Bytes()
	ct := fmt.Sprintf(`multipart/related; type="application/dicom"; boundary=%s`, mw.Boundary())
	u := Location{Base: l.Base, Study: l.Study}.URL()
	if l.Study == "" {
		u = l.Base + "/studies"
	}
	_, rb, err := c.do(ctx, func() (*http.Request, error) {
		r, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
		if err == nil {
			r.Header.Set("Content-Type", ct)
			r.Header.Set("Accept", "application/dicom+json")
		}
		return r, err
	})
	if err != nil {
		return err
	}
	// 200: all stored; 202: some warnings or failures (listed in the body).
	var res Dataset
	if len(bytes.TrimSpace(rb)) > 0 && json.Unmarshal(rb, &res) == nil {
		if f, ok := res["00081198"]; ok && len(f.Value) > 0 {
			return fmt.Errorf("dicomweb: POST %s: the server refused %d of %d instances (%s)", u, len(f.Value), len(instances), string(f.Value[0]))
		}
	}
	return nil
}
