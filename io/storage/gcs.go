package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"

	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/iterator"
)

func init() { registerBuiltin(gcsFS{}, "gs") }

// gcsFS is Google Cloud Storage: gs://bucket/object. A "directory" is an
// object-name prefix ending in '/'. Object writes are atomic, so it needs
// no AtomicWriter; it has no Renamer either (Rename copies through this
// process, then deletes).
type gcsFS struct{}

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

// splitGS splits gs://bucket/object into bucket and object.
func splitGS(uri string) (bucket, object string, err error) {
	_, rest, _ := splitScheme(uri)
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

// wrapNotExist makes GCS's not-found errors match fs.ErrNotExist.
func wrapNotExist(uri string, err error) error {
	if errors.Is(err, gcs.ErrObjectNotExist) || errors.Is(err, gcs.ErrBucketNotExist) {
		return fmt.Errorf("storage: %s: %w (%v)", uri, fs.ErrNotExist, err)
	}
	return fmt.Errorf("storage: %s: %w", uri, err)
}

func (gcsFS) Open(ctx context.Context, uri string) (io.ReadCloser, int64, error) {
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

func (gcsFS) Stat(ctx context.Context, uri string) (Info, error) {
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

// List lists the objects under the prefix dir + "/", skipping directory
// placeholders (names ending in '/').
func (gcsFS) List(ctx context.Context, dir string) ([]string, error) {
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
	scheme := dir[:strings.Index(dir, "://")+len("://")] // as dir writes it
	var out []string
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
		out = append(out, scheme+bucket+"/"+a.Name)
	}
	sort.Strings(out)
	return out, nil
}

// Create opens a writer whose object appears when Close returns without
// error; cancelling ctx abandons the write.
func (gcsFS) Create(ctx context.Context, uri string) (io.WriteCloser, error) {
	o, err := object(uri)
	if err != nil {
		return nil, err
	}
	return &gcsWriter{w: o.NewWriter(ctx), uri: uri}, nil
}

func (gcsFS) Remove(ctx context.Context, uri string) error {
	o, err := object(uri)
	if err != nil {
		return err
	}
	if err := o.Delete(ctx); err != nil && !errors.Is(err, gcs.ErrObjectNotExist) {
		return fmt.Errorf("storage: deleting %s: %w", uri, err)
	}
	return nil
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
