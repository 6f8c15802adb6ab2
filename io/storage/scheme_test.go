package storage_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/multiad/multiad/io/storage"
)

// memBackend serves a fixed set of files for the scheme test://.
type memBackend map[string]string

func (m memBackend) Open(_ context.Context, uri string) (io.ReadCloser, int64, error) {
	s, ok := m[uri]
	if !ok {
		return nil, 0, fs.ErrNotExist
	}
	return io.NopCloser(strings.NewReader(s)), -1, nil
}

func (m memBackend) Stat(_ context.Context, uri string) (storage.Info, error) {
	s, ok := m[uri]
	if !ok {
		return storage.Info{}, fs.ErrNotExist
	}
	return storage.Info{Size: int64(len(s))}, nil
}

func (m memBackend) List(_ context.Context, dir string) ([]string, error) {
	return []string{dir + "/a"}, nil
}

func (m memBackend) Glob(_ context.Context, pattern string) ([]string, error) {
	return []string{pattern + "#glob"}, nil
}

func TestRegisterScheme(t *testing.T) {
	storage.RegisterScheme("memtest", memBackend{"memtest://h/a": "hello"})
	ctx := context.Background()
	if !storage.Registered("memtest://h/a") || !storage.Registered("MEMTEST://h") || storage.Registered("other://h") || storage.Registered("/tmp/x") {
		t.Error("Registered")
	}
	b, err := storage.ReadFile(ctx, "memtest://h/a", 0)
	if err != nil || string(b) != "hello" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if _, err := storage.ReadFile(ctx, "memtest://h/a", 3); err == nil {
		t.Error("ReadFile over the limit: no error")
	}
	if _, err := storage.Stat(ctx, "memtest://h/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat missing: %v", err)
	}
	if got, _ := storage.List(ctx, "memtest://h"); !reflect.DeepEqual(got, []string{"memtest://h/a"}) {
		t.Errorf("List = %v", got)
	}
	if got, _ := storage.Glob(ctx, "memtest://h?x=*"); !reflect.DeepEqual(got, []string{"memtest://h?x=*#glob"}) {
		t.Errorf("Glob = %v", got)
	}
	// Unregistered schemes keep failing as before.
	if _, err := storage.ReadFile(ctx, "nosuch://h/a", 0); err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
		t.Errorf("unregistered scheme: %v", err)
	}
	for _, bad := range []string{"", "gs", "file"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterScheme(%q) did not panic", bad)
				}
			}()
			storage.RegisterScheme(bad, memBackend{})
		}()
	}
}
