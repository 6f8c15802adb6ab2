package dicomweb

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"sort"

	"github.com/multiad/multiad/io/storage"
)

func init() {
	for _, s := range Schemes {
		storage.RegisterScheme(s, Backend{})
	}
}

// Backend is the io/storage backend of the DICOMweb schemes: read-only (no
// storage.WritableBackend), with its own Glob (a query is its pattern). It
// uses the process-wide client (Default).
type Backend struct{}

// Open retrieves the instance at uri with WADO-RS.
func (Backend) Open(ctx context.Context, uri string) (io.ReadCloser, int64, error) {
	l, err := Parse(uri)
	if err != nil {
		return nil, 0, err
	}
	b, err := Default().Retrieve(ctx, l)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// Stat checks with QIDO-RS that the instance at uri exists. The size is
// unknown (0). A collection URI is an error, like a directory.
func (Backend) Stat(ctx context.Context, uri string) (storage.Info, error) {
	l, err := Parse(uri)
	if err != nil {
		return storage.Info{}, err
	}
	if !l.IsInstance() {
		return storage.Info{}, fmt.Errorf("dicomweb: %s is a query, not an instance", uri)
	}
	q := url.Values{"SOPInstanceUID": {l.Instance}}
	ds, err := Default().Query(ctx, l.Base+"/studies/"+l.Study+"/series/"+l.Series+"/instances", q, TagSOPInstanceUID)
	if err != nil {
		return storage.Info{}, err
	}
	for _, d := range ds {
		if d.String(TagSOPInstanceUID) == l.Instance {
			return storage.Info{}, nil
		}
	}
	return storage.Info{}, fmt.Errorf("dicomweb: %s: %w", uri, fs.ErrNotExist)
}

// List returns the instance URIs that the query uri matches, sorted.
func (Backend) List(ctx context.Context, uri string) ([]string, error) {
	l, err := Parse(uri)
	if err != nil {
		return nil, err
	}
	ins, err := Default().List(ctx, l)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = l.InstanceURI(in.Study, in.Series, in.SOP)
	}
	sort.Strings(out)
	return out, nil
}

// Glob is List: the query is the pattern.
func (b Backend) Glob(ctx context.Context, pattern string) ([]string, error) {
	return b.List(ctx, pattern)
}

// sortInstances sorts by study, series and SOP instance UID.
func sortInstances(in []Instance) {
	sort.Slice(in, func(i, j int) bool {
		a, b := in[i], in[j]
		if a.Study != b.Study {
			return a.Study < b.Study
		}
		if a.Series != b.Series {
			return a.Series < b.Series
		}
		return a.SOP < b.SOP
	})
}
