package read

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/multiad/multiad/io/storage"
)

// maxManifestBytes bounds the size of a manifest CSV.
const maxManifestBytes = 1 << 30

// Manifest column names; every other column goes to Item.Meta.
const (
	ColURI       = "uri"
	ColSlice     = "slice"
	ColLabel     = "label"
	ColMaskURI   = "mask_uri"
	ColMaskSlice = "mask_slice"
)

// List lists input (a glob, a directory, a manifest CSV or an MVTec layout)
// into Files, in a deterministic order. Manifest rows that cannot be parsed
// become Files with Error set, so that they are reported, not dropped, and
// the rows that name one file are one File, in the order of its first row.
func List(ctx context.Context, input string) ([]File, error) {
	var files []File
	byURI := map[string]int{}
	err := ListEach(ctx, input, func(f File) error {
		if f.Error == "" {
			if k, ok := byURI[f.URI]; ok {
				files[k].Items = append(files[k].Items, f.Items...)
				return nil
			}
			byURI[f.URI] = len(files)
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

// ListEach lists input as List does, but hands each File to emit as it is
// listed instead of holding the listing: a manifest of any length is read
// row by row. Adjacent manifest rows that name one file are one File; rows
// of one file that other rows separate are one File per run. An error from
// emit stops the listing and is returned.
func ListEach(ctx context.Context, input string, emit func(File) error) error {
	if strings.HasSuffix(strings.ToLower(input), ".csv") {
		return listManifest(ctx, input, emit)
	}
	files, err := listFiles(ctx, input)
	if err != nil {
		return err
	}
	for i := range files {
		if err := emit(files[i]); err != nil {
			return err
		}
		files[i] = File{}
	}
	return nil
}

// listFiles lists a glob, a directory, an MVTec layout or a single file.
func listFiles(ctx context.Context, input string) ([]File, error) {
	switch {
	case input == "":
		return nil, errors.New("read: no input given")
	case strings.ContainsAny(input, "*?["):
		uris, err := storage.Glob(ctx, input)
		if err != nil {
			return nil, fmt.Errorf("read: glob %s: %w", input, err)
		}
		if len(uris) == 0 {
			return nil, fmt.Errorf("read: glob %s matches no files", input)
		}
		return singles(uris), nil
	}
	uris, err := listDir(ctx, input)
	if err != nil {
		// Not a directory: a single file.
		if _, serr := storage.Stat(ctx, input); serr == nil {
			return singles([]string{input}), nil
		}
		return nil, fmt.Errorf("read: %s: %w", input, err)
	}
	if len(uris) == 0 {
		if _, serr := storage.Stat(ctx, input); serr == nil {
			return singles([]string{input}), nil
		}
		return nil, fmt.Errorf("read: %s: no files found", input)
	}
	if files, ok := listMVTec(input, uris); ok {
		return files, nil
	}
	return singles(uris), nil
}

// listDir lists every file below dir, skipping hidden files and folders.
func listDir(ctx context.Context, dir string) ([]string, error) {
	uris, err := storage.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range uris {
		if hidden(rel(dir, u)) {
			continue
		}
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}

// rel returns u relative to dir, with "/" separators.
func rel(dir, u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, strings.TrimSuffix(dir, "/")), "/")
}

func hidden(relPath string) bool {
	for _, p := range strings.Split(relPath, "/") {
		if strings.HasPrefix(p, ".") {
			return true
		}
	}
	return false
}

func singles(uris []string) []File {
	files := make([]File, len(uris))
	for i, u := range uris {
		files[i] = File{URI: u, Items: []Item{{URI: u, Index: -1, Label: -1, MaskIndex: -1}}}
	}
	return files
}

// listMVTec recognises the MVTec AD layout: files under test/<category>/
// and masks under ground_truth/<defect>/<name>_mask.png. test/good images
// are labelled 0 with an all-zero mask; test/<defect> images are labelled 1
// with Group=<defect>. Files outside test/ are ignored.
func listMVTec(dir string, uris []string) ([]File, bool) {
	var tests []string
	hasGT := false
	for _, u := range uris {
		r := rel(dir, u)
		switch {
		case strings.HasPrefix(r, "test/"):
			tests = append(tests, u)
		case strings.HasPrefix(r, "ground_truth/"):
			hasGT = true
		}
	}
	if len(tests) == 0 || !hasGT {
		return nil, false
	}
	var files []File
	for _, u := range tests {
		parts := strings.Split(rel(dir, u), "/")
		it := Item{URI: u, Index: -1, Label: -1, MaskIndex: -1}
		if len(parts) == 3 {
			cat, name := parts[1], parts[2]
			if cat == "good" {
				it.Label, it.MaskURI = 0, EmptyMask
			} else {
				stem := strings.TrimSuffix(name, path.Ext(name))
				it.Label, it.Group = 1, cat
				it.MaskURI = storage.Join(dir, "ground_truth", cat, stem+"_mask.png")
			}
		}
		files = append(files, File{URI: u, Items: []Item{it}})
	}
	return files, true
}

// listManifest reads a manifest CSV row by row and emits its rows as
// Files, adjacent rows of one file as one File.
func listManifest(ctx context.Context, uri string, emit func(File) error) error {
	rc, err := storage.OpenLimit(ctx, uri, maxManifestBytes)
	if err != nil {
		return fmt.Errorf("read: manifest %s: %w", uri, err)
	}
	defer rc.Close()
	return parseManifest(rc, uri, emit)
}

// parseManifest parses the manifest uri from in. A malformed line becomes
// a File with Error set; an error reading in stops the listing.
func parseManifest(in io.Reader, uri string, emit func(File) error) error {
	r := csv.NewReader(bufio.NewReaderSize(in, 1<<16))
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return fmt.Errorf("read: manifest %s: header: %w", uri, err)
	}
	header = slices.Clone(header)
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		header[i] = h
		col[h] = i
	}
	if _, ok := col[ColURI]; !ok {
		return fmt.Errorf("read: manifest %s: no %q column in header %q", uri, ColURI, strings.Join(header, ","))
	}
	_, hasMasks := col[ColMaskURI]
	base := storage.Dir(uri)
	var cur File // the run of rows being gathered
	rows := 0
	flush := func() error {
		if cur.URI == "" {
			return nil
		}
		f := cur
		cur = File{}
		return emit(f)
	}
	// add emits what is gathered and f, or gathers f's row with the run.
	add := func(f File) error {
		rows++
		if f.Error == "" && cur.Error == "" && f.URI == cur.URI {
			cur.Items = append(cur.Items, f.Items...)
			return nil
		}
		if err := flush(); err != nil {
			return err
		}
		cur = f
		return nil
	}
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if pe := (*csv.ParseError)(nil); !errors.As(err, &pe) {
				// Not the line but the reading failed: the rest of the
				// manifest is unknown.
				return fmt.Errorf("read: manifest %s: %w", uri, err)
			}
			// A malformed CSV line: report it and go on with the next.
			where := fmt.Sprintf("%s:%d", uri, line)
			if err := add(File{URI: where, Items: []Item{{URI: where, Index: -1, Label: -1, MaskIndex: -1}},
				Error: fmt.Sprintf("read: manifest %s: %v", where, err)}); err != nil {
				return err
			}
			continue
		}
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		it, perr := parseRow(get, base, hasMasks)
		if it.URI == "" {
			it.URI = fmt.Sprintf("%s:%d", uri, line)
		}
		for i, h := range header {
			switch h {
			case ColURI, ColSlice, ColLabel, ColMaskURI, ColMaskSlice:
				continue
			}
			if i < len(rec) {
				if it.Meta == nil {
					it.Meta = map[string]string{}
				}
				it.Meta[h] = rec[i]
			}
		}
		f := File{URI: it.URI, Items: []Item{it}}
		if perr != nil {
			f.Error = fmt.Sprintf("read: manifest %s line %d: %v", uri, line, perr)
		}
		if err := add(f); err != nil {
			return err
		}
	}
	if rows == 0 {
		return fmt.Errorf("read: manifest %s has no rows", uri)
	}
	return flush()
}

// parseRow builds the Item of one manifest row.
func parseRow(get func(string) string, base string, hasMasks bool) (Item, error) {
	it := Item{Index: -1, Label: -1, MaskIndex: -1}
	u := get(ColURI)
	if u == "" {
		return it, errors.New("empty uri")
	}
	it.URI = resolve(base, u)
	var err error
	if it.Index, err = optInt(get(ColSlice), -1); err != nil {
		return it, fmt.Errorf("slice: %v", err)
	}
	if it.Label, err = optInt(get(ColLabel), -1); err != nil {
		return it, fmt.Errorf("label: %v", err)
	}
	if it.Label < -1 || it.Label > 1 {
		return it, fmt.Errorf("label %d: want 0, 1 or empty", it.Label)
	}
	if it.Index < -1 {
		return it, fmt.Errorf("slice %d is negative", it.Index)
	}
	if m := get(ColMaskURI); m != "" {
		it.MaskURI = resolve(base, m)
		if it.MaskIndex, err = optInt(get(ColMaskSlice), it.Index); err != nil {
			return it, fmt.Errorf("mask_slice: %v", err)
		}
	} else if hasMasks && it.Label == 0 {
		it.MaskURI = EmptyMask
	}
	return it, nil
}

func optInt(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		// Accept "3.0" as written by pandas.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int(f)) {
			return def, fmt.Errorf("%q is not an integer", s)
		}
		v = int(f)
	}
	return v, nil
}

// resolve makes a manifest URI absolute: relative ones are relative to the
// manifest's folder.
func resolve(base, u string) string {
	if strings.Contains(u, "://") || strings.HasPrefix(u, "/") {
		return u
	}
	return storage.Join(base, u)
}
