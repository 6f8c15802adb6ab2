// Package state keeps the ledger of an incremental (nightly) scoring run:
// which inputs were scored, at which object generation or modification
// time and size, with which model. Select filters a listing down to the
// inputs that are new, changed, or were scored with another model;
// WriteEntries hands the new ledger entries of the files that scored
// without failure to the driver, which merges them into the ledger with
// Merge only after the run's outputs are committed, so that a crash never
// marks as done an input whose results were not written.
//
// The ledger is a JSON-lines file, one Entry per input, sorted by URI; it
// is replaced as a whole (storage.WriteFileAtomic), so readers see the old
// or the new version, never a mix. Two runs on the same ledger at once
// are not supported: the last to finish wins.
package state

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/multiad/multiad/io/storage"
)

// maxLedgerBytes bounds the size of a ledger file.
const maxLedgerBytes = 4 << 30

// Entry is one scored input in the ledger.
type Entry struct {
	// URI is the input file or object.
	URI string `json:"uri"`
	// Size, ModTime (RFC 3339, UTC) and Generation (GCS; 0 locally) are
	// what the input looked like when it was scored.
	Size       int64  `json:"size"`
	ModTime    string `json:"mtime"`
	Generation int64  `json:"generation,omitempty"`
	// Model is the sha256 of the bundle's model.onnx that scored it.
	Model string `json:"model_sha256"`
	// Run is the run (its folder under runs/) that scored it.
	Run string `json:"run"`
}

// EntryOf makes the ledger entry of an input as storage.Stat describes it.
func EntryOf(uri string, info storage.Info, model, run string) Entry {
	return Entry{URI: uri, Size: info.Size, ModTime: info.ModTime.UTC().Format(time.RFC3339Nano),
		Generation: info.Generation, Model: model, Run: run}
}

// Reasons an input is scored again (Compare).
const (
	New          = "new"
	Changed      = "changed"
	ModelChanged = "model_changed"
	Unchanged    = ""
)

// Compare says why cur (the input now) must be scored given the ledger's
// old entry (nil: never scored): New, Changed (size, generation or
// modification time differ), ModelChanged, or Unchanged.
func Compare(old *Entry, cur Entry) string {
	switch {
	case old == nil:
		return New
	case old.Size != cur.Size || old.Generation != cur.Generation || !sameTime(old.ModTime, cur.ModTime):
		return Changed
	case old.Model != cur.Model:
		return ModelChanged
	}
	return Unchanged
}

// sameTime compares two RFC 3339 times (as instants when both parse).
func sameTime(a, b string) bool {
	ta, ea := time.Parse(time.RFC3339Nano, a)
	tb, eb := time.Parse(time.RFC3339Nano, b)
	if ea != nil || eb != nil {
		return a == b
	}
	return ta.Equal(tb)
}

// Parse reads ledger lines. Blank lines are skipped; a malformed line is an
// error naming its line number (where is the file, for messages).
func Parse(where string, data []byte) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("state: %s line %d: %w", where, n, err)
		}
		if e.URI == "" {
			return nil, fmt.Errorf("state: %s line %d: entry without uri", where, n)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("state: %s: %w", where, err)
	}
	return out, nil
}

// Format writes entries as ledger lines, sorted by URI.
func Format(entries []Entry) []byte {
	sorted := append([]Entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].URI < sorted[j].URI })
	var b bytes.Buffer
	for _, e := range sorted {
		j, _ := json.Marshal(e) // an Entry always marshals
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Read reads the ledger at uri; a missing ledger is empty.
func Read(ctx context.Context, uri string) ([]Entry, error) {
	data, err := storage.ReadFile(ctx, uri, maxLedgerBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: ledger: %w", err)
	}
	return Parse(uri, data)
}

// Merge adds entries to the ledger at uri, replacing the entries of the same
// inputs, and writes the new version atomically. It returns the number of
// entries in the new version.
func Merge(ctx context.Context, uri string, entries []Entry) (int, error) {
	old, err := Read(ctx, uri)
	if err != nil {
		return 0, err
	}
	byURI := make(map[string]Entry, len(old)+len(entries))
	for _, e := range old {
		byURI[e.URI] = e
	}
	for _, e := range entries {
		byURI[e.URI] = e
	}
	all := make([]Entry, 0, len(byURI))
	for _, e := range byURI {
		all = append(all, e)
	}
	if err := storage.WriteFileAtomic(ctx, uri, Format(all)); err != nil {
		return 0, fmt.Errorf("state: writing ledger: %w", err)
	}
	return len(all), nil
}

// Validate checks a ledger URI: a file, not a folder ("" is no ledger).
func Validate(uri string) error {
	if uri == "" {
		return nil
	}
	if strings.HasSuffix(uri, "/") {
		return fmt.Errorf("state: ledger %q: want the ledger file (e.g. %sledger.jsonl), not a folder", uri, uri)
	}
	return nil
}
