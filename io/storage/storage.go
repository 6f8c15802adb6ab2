// Package storage reads and writes files through one API for local paths,
// file:// URIs and Google Cloud Storage objects (gs://bucket/object).
//
// GCS access uses one client per process, created on first use. When the
// environment variable STORAGE_EMULATOR_HOST (host:port, no scheme) is set
// at that moment, the client talks plain HTTP to that emulator without
// credentials; otherwise it uses Application Default Credentials.
//
// Paths are slash-separated for GCS. A GCS "directory" is an object-name
// prefix ending in '/'.
//
// Other read-only sources plug in with RegisterScheme (io/dicomweb
// registers dicomweb://, dicomweb+http:// and dicomweb+https://).
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

// Info describes a file or object.
type Info struct {
	// Size is the size in bytes.
	Size int64
	// ModTime is the modification time (the object's update time on GCS).
	ModTime time.Time
	// Generation is the GCS object generation; 0 for local files.
	Generation int64
}

var (
	clientMu  sync.Mutex
	client    *gcs.Client
	clientErr error
)

// gcsClient returns the process's GCS client, creating it on first use.
func gcsClient() (*gcs.Client, error) {
	clientMu.Lock()
	defer clientMu.Unlock()
	if client == nil && clientErr == nil {
		// The client outlives any one request: not tied to a caller's context.
		client, clientErr = gcs.NewClient(context.Background())
		if clientErr != nil {
			clientErr = fmt.Errorf("storage: creating GCS client: %w", clientErr)
		}
	}
	return client, clientErr
}

// resetClient drops the shared client so that the next use creates a new one
// (for tests that change STORAGE_EMULATOR_HOST).
func resetClient() {
	clientMu.Lock()
	defer clientMu.Unlock()
	if client != nil {
		client.Close()
	}
	client, clientErr = nil, nil
}

// IsRemote reports whether uri names a GCS object (gs://...).
func IsRemote(uri string) bool { return strings.HasPrefix(uri, "gs://") }

// splitGS splits gs://bucket/object into bucket and object.
func splitGS(uri string) (bucket, object string, err error) {
	rest := strings.TrimPrefix(uri, "gs://")
	bucket, object, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("storage: %q: no bucket name", uri)
	}
	return bucket, object, nil
}

// object returns the GCS handle for uri, which must name an object.
func object(uri string) (*gcs.ObjectHandle, error) {
	b, o, err := splitGS(uri)
	if err != nil {
		return nil, err
	}
	if o == "" || strings.HasSuffix(o, "/") {
		return nil, fmt.Errorf("storage: %q: not an object name", uri)
	}
	c, err := gcsClient()
	if err != nil {
		return nil, err
	}
	return c.Bucket(b).Object(o), nil
}

// localPath turns a local path or file:// URI into a file system path.
func localPath(uri string) (string, error) {
	if !strings.HasPrefix(uri, "file://") {
		if strings.Contains(uri, "://") {
			return "", fmt.Errorf("storage: %q: unsupported scheme", uri)
		}
		return uri, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("storage: %w", err)
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", fmt.Errorf("storage: %q: file URI with host %q", uri, u.Host)
	}
	return filepath.FromSlash(u.Path), nil
}

// wrapNotExist makes GCS's not-found errors match fs.ErrNotExist.
func wrapNotExist(uri string, err error) error {
	if errors.Is(err, gcs.ErrObjectNotExist) || errors.Is(err, gcs.ErrBucketNotExist) {
		return fmt.Errorf("storage: %s: %w (%v)", uri, fs.ErrNotExist, err)
	}
	return fmt.Errorf("storage: %s: %w", uri, err)
}

// ReadFile reads the whole file or object at uri. A file larger than
// maxBytes is an error, found before reading; maxBytes <= 0 means no limit.
func ReadFile(ctx context.Context, uri string, maxBytes int64) ([]byte, error) {
	r, size, err := open(ctx, uri)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if maxBytes > 0 && size > maxBytes {
		return nil, fmt.Errorf("storage: %s: %d bytes exceeds the limit of %d", uri, size, maxBytes)
	}
	var lr io.Reader = r
	if maxBytes > 0 { // the file may have grown since it was opened
		lr = io.LimitReader(r, maxBytes+1)
	}
	b := make([]byte, 0, max(size, 0)+1)
	for {
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("storage: reading %s: %w", uri, err)
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
	if maxBytes > 0 && int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("storage: %s: more than the limit of %d bytes", uri, maxBytes)
	}
	return b, nil
}

// Open opens the file or object at uri for reading.
func Open(ctx context.Context, uri string) (io.ReadCloser, error) {
	r, _, err := open(ctx, uri)
	return r, err
}

// open opens uri and returns its size.
func open(ctx context.Context, uri string) (io.ReadCloser, int64, error) {
	if b := backend(uri); b != nil {
		return b.Open(ctx, uri)
	}
	if IsRemote(uri) {
		o, err := object(uri)
		if err != nil {
			return nil, 0, err
		}
		r, err := o.NewReader(ctx)
		if err != nil {
			return nil, 0, wrapNotExist(uri, err)
		}
		return r, r.Attrs.Size, nil
	}
	p, err := localPath(uri)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, fmt.Errorf("storage: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.IsDir() {
		err = fmt.Errorf("%s is a directory", p)
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("storage: %w", err)
	}
	return f, st.Size(), nil
}

// Create creates (or truncates) the file or object at uri for writing. Local
// parent directories are created. A GCS object appears when Close returns
// without error; cancelling ctx abandons the write.
func Create(ctx context.Context, uri string) (io.WriteCloser, error) {
	if IsRemote(uri) {
		o, err := object(uri)
		if err != nil {
			return nil, err
		}
		return &gcsWriter{w: o.NewWriter(ctx), uri: uri}, nil
	}
	p, err := localPath(uri)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	f, err := os.Create(p)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return f, nil
}

// gcsWriter adds the URI to errors from a GCS object writer.
type gcsWriter struct {
	w   *gcs.Writer
	uri string
}

func (g *gcsWriter) Write(p []byte) (int, error) {
	n, err := g.w.Write(p)
	if err != nil {
		err = fmt.Errorf("storage: writing %s: %w", g.uri, err)
	}
	return n, err
}

func (g *gcsWriter) Close() error {
	if err := g.w.Close(); err != nil {
		return fmt.Errorf("storage: writing %s: %w", g.uri, err)
	}
	return nil
}

// WriteFileAtomic writes data to uri so that readers see either the old
// content or all of the new: locally through a temporary file in the same
// directory and a rename; on GCS object writes are atomic already.
func WriteFileAtomic(ctx context.Context, uri string, data []byte) error {
	if IsRemote(uri) {
		w, err := Create(ctx, uri)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	}
	p, err := localPath(uri)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: writing %s: %w", uri, err)
	}
	return nil
}

// Stat returns the size and modification time of the file or object at uri.
// A missing file or object gives an error matching fs.ErrNotExist.
func Stat(ctx context.Context, uri string) (Info, error) {
	if b := backend(uri); b != nil {
		return b.Stat(ctx, uri)
	}
	if IsRemote(uri) {
		o, err := object(uri)
		if err != nil {
			return Info{}, err
		}
		a, err := o.Attrs(ctx)
		if err != nil {
			return Info{}, wrapNotExist(uri, err)
		}
		return Info{Size: a.Size, ModTime: a.Updated, Generation: a.Generation}, nil
	}
	p, err := localPath(uri)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return Info{}, fmt.Errorf("storage: %w", err)
	}
	if st.IsDir() {
		return Info{}, fmt.Errorf("storage: %s is a directory", uri)
	}
	return Info{Size: st.Size(), ModTime: st.ModTime()}, nil
}

// Join joins path elements onto base, for gs:// URIs, file:// URIs and local
// paths alike.
func Join(base string, elem ...string) string {
	for _, scheme := range []string{"gs://", "file://"} {
		if strings.HasPrefix(base, scheme) {
			rest := strings.TrimPrefix(base, scheme)
			return scheme + path.Join(append([]string{rest}, elem...)...)
		}
	}
	return filepath.Join(append([]string{base}, elem...)...)
}

// Dir returns all but the last element of uri: gs://b/x/y gives gs://b/x,
// and gs://b/x gives gs://b.
func Dir(uri string) string {
	for _, scheme := range []string{"gs://", "file://"} {
		if strings.HasPrefix(uri, scheme) {
			rest := strings.TrimSuffix(strings.TrimPrefix(uri, scheme), "/")
			if i := strings.LastIndex(rest, "/"); i >= 0 {
				rest = rest[:i]
			} else if scheme == "file://" {
				rest = "."
			}
			return scheme + rest
		}
	}
	return filepath.Dir(uri)
}

// List returns every file (object) under dir, recursively, sorted. The
// results have the same form as dir (gs://, file:// or plain path).
func List(ctx context.Context, dir string) ([]string, error) {
	if b := backend(dir); b != nil {
		return b.List(ctx, dir)
	}
	return find(ctx, dir, nil)
}

// Glob returns the files (objects) whose names match pattern, sorted.
// '*' matches any run of characters except '/', '?' one character, '[...]'
// a character class (as path.Match), and a path element '**' any number of
// directories (zero or more). Directories themselves are not returned.
func Glob(ctx context.Context, pattern string) ([]string, error) {
	if b := backend(pattern); b != nil {
		return b.Glob(ctx, pattern)
	}
	segs := strings.Split(patternPath(pattern), "/")
	// The directory to walk is the longest prefix free of metacharacters.
	n := 0
	for n < len(segs)-1 && !hasMeta(segs[n]) {
		n++
	}
	for _, s := range segs {
		if _, err := path.Match(s, ""); err != nil && s != "**" {
			return nil, fmt.Errorf("storage: bad pattern %q: %w", pattern, err)
		}
	}
	root := strings.Join(segs[:n], "/")
	if n == 0 {
		root = "."
		if strings.HasPrefix(patternPath(pattern), "/") {
			root = "/"
		}
	}
	prefix := pattern[:len(pattern)-len(patternPath(pattern))]
	if IsRemote(pattern) && n == 0 {
		return nil, fmt.Errorf("storage: bad pattern %q: wildcards in the bucket name", pattern)
	}
	match := func(rel string) bool { return matchSegs(segs[n:], strings.Split(rel, "/")) }
	return find(ctx, prefix+root, match)
}

// patternPath strips the scheme from a URI.
func patternPath(uri string) string {
	for _, scheme := range []string{"gs://", "file://"} {
		if strings.HasPrefix(uri, scheme) {
			return strings.TrimPrefix(uri, scheme)
		}
	}
	return filepath.ToSlash(uri)
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// matchSegs matches path elements against pattern elements, '**' matching
// any number of elements.
func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// find lists the files under dir whose slash-separated path relative to dir
// satisfies match (all when match is nil), sorted.
func find(ctx context.Context, dir string, match func(rel string) bool) ([]string, error) {
	var out []string
	if IsRemote(dir) {
		bucket, prefix, err := splitGS(dir)
		if err != nil {
			return nil, err
		}
		if prefix != "" && !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		c, err := gcsClient()
		if err != nil {
			return nil, err
		}
		q := &gcs.Query{Prefix: prefix}
		if err := q.SetAttrSelection([]string{"Name"}); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		it := c.Bucket(bucket).Objects(ctx, q)
		for {
			a, err := it.Next()
			if err == iterator.Done {
				break
			}
			if err != nil {
				return nil, wrapNotExist(dir, err)
			}
			rel := strings.TrimPrefix(a.Name, prefix)
			if rel == "" || strings.HasSuffix(rel, "/") {
				continue // a directory placeholder
			}
			if match == nil || match(rel) {
				out = append(out, "gs://"+bucket+"/"+a.Name)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	root, err := localPath(dir)
	if err != nil {
		return nil, err
	}
	scheme := ""
	if strings.HasPrefix(dir, "file://") {
		scheme = "file://"
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) && match != nil {
				return filepath.SkipDir // a glob under a missing directory matches nothing
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if match == nil || match(filepath.ToSlash(rel)) {
			if scheme != "" {
				p = scheme + filepath.ToSlash(p)
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: listing %s: %w", dir, err)
	}
	sort.Strings(out)
	return out, nil
}
