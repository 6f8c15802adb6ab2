package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
)

func init() {
	registerBuiltin(localFS{}, "", "file")
}

// localFS is the local file system: plain paths and file:// URIs.
type localFS struct{}

// LocalPath returns the file system path of uri when it names a local
// file (a plain path, or a file:// URI without a host); ok is false for
// every other store.
func LocalPath(uri string) (p string, ok bool) {
	if b, err := lookup(uri); err != nil {
		return "", false
	} else if _, ok := b.(localFS); !ok {
		return "", false
	}
	p, err := localPath(uri)
	return p, err == nil
}

// localPath turns a local path or file:// URI into a file system path.
func localPath(uri string) (string, error) {
	if _, _, ok := splitScheme(uri); !ok {
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

func (localFS) Open(_ context.Context, uri string) (io.ReadCloser, int64, error) {
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

func (localFS) Stat(_ context.Context, uri string) (Info, error) {
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

func (localFS) IsDir(_ context.Context, uri string) (bool, error) {
	p, err := localPath(uri)
	if err != nil {
		return false, err
	}
	st, err := os.Stat(p)
	if err != nil {
		return false, fmt.Errorf("storage: %w", err)
	}
	return st.IsDir(), nil
}

func (localFS) List(ctx context.Context, dir string) ([]string, error) {
	return walk(ctx, dir, nil)
}

// Glob walks the pattern's fixed prefix; a missing one matches nothing.
func (localFS) Glob(ctx context.Context, pattern string) ([]string, error) {
	g, err := parseGlob(pattern)
	if err != nil {
		return nil, err
	}
	return walk(ctx, g.root, g.match)
}

// walk lists the files under dir whose slash-separated path relative to
// dir satisfies match (all when match is nil; a missing dir is then an
// error), sorted.
func walk(ctx context.Context, dir string, match func(rel string) bool) ([]string, error) {
	root, err := localPath(dir)
	if err != nil {
		return nil, err
	}
	prefix := "" // "file://", in the case dir has it
	if _, rest, ok := splitScheme(dir); ok {
		prefix = dir[:len(dir)-len(rest)]
	}
	var out []string
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
			if prefix != "" {
				p = prefix + filepath.ToSlash(p)
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

func (localFS) Create(_ context.Context, uri string) (io.WriteCloser, error) {
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

// WriteFileAtomic writes through a temporary file in the same directory
// and a rename.
func (localFS) WriteFileAtomic(_ context.Context, uri string, data []byte) error {
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

// Rename renames, creating dst's directory.
func (localFS) Rename(_ context.Context, src, dst string) error {
	s, err := localPath(src)
	if err != nil {
		return err
	}
	d, err := localPath(dst)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if err := os.Rename(s, d); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

func (localFS) Remove(_ context.Context, uri string) error {
	p, err := localPath(uri)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

func (localFS) RemoveAll(_ context.Context, dir string) error {
	p, err := localPath(dir)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}
