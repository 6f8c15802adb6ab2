package state

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/transforms/read"
)

// Sidecar files that the pipeline leaves in the staging folder for the
// driver (report.IsSidecar: they are not committed).
const (
	// EntriesFile holds the new ledger entries of the files scored
	// without failure, as ledger lines.
	EntriesFile = "_ledger.jsonl"
	// TallyFile holds the Tally of the selection, as JSON.
	TallyFile = "_incremental.json"
)

// Tally counts the listed inputs by what Select decided.
type Tally struct {
	Listed       int `json:"listed"`
	New          int `json:"new"`
	Changed      int `json:"changed"`
	ModelChanged int `json:"model_changed"`
	Unchanged    int `json:"unchanged"`
}

// Add adds the counts of o.
func (t Tally) Add(o Tally) Tally {
	t.Listed += o.Listed
	t.New += o.New
	t.Changed += o.Changed
	t.ModelChanged += o.ModelChanged
	t.Unchanged += o.Unchanged
	return t
}

// candidate is a listed file with its current ledger entry (Stat is false
// when it could not be stat'ed: it is scored, and fails there).
type candidate struct {
	File  read.File
	Entry Entry
	Stat  bool
}

func init() {
	beam.RegisterType(reflect.TypeFor[Entry]())
	beam.RegisterType(reflect.TypeFor[Tally]())
	beam.RegisterType(reflect.TypeFor[candidate]())
	register.DoFn3x1[context.Context, read.File, func(string, candidate), error](&statFn{})
	register.DoFn3x1[context.Context, []byte, func(string, Entry), error](&ledgerFn{})
	register.DoFn6x0[string, func(*candidate) bool, func(*Entry) bool, func(read.File), func(Entry), func(Tally)](&decideFn{})
	register.DoFn5x1[context.Context, []byte, func(*Entry) bool, func(*read.Failure) bool, func(*Tally) bool, error](&writeFn{})
	register.Emitter2[string, candidate]()
	register.Emitter2[string, Entry]()
	register.Emitter1[read.File]()
	register.Emitter1[Entry]()
	register.Emitter1[Tally]()
	register.Iter1[candidate]()
	register.Iter1[Entry]()
	register.Iter1[read.Failure]()
	register.Iter1[Tally]()
}

// Options configure Select.
type Options struct {
	// Ledger is the ledger URI (a missing ledger is empty).
	Ledger string
	// Model is the sha256 of the model that scores this run.
	Model string
	// Run names this run in the new entries.
	Run string
}

// Select keeps the files of a PCollection<read.File> that are not in the
// ledger, changed since (size, generation or modification time), or were
// scored with another model. It returns them, their new ledger entries
// (PCollection<Entry>) and the counts (PCollection<Tally>, one per file).
// Files are stat'ed in parallel after a reshuffle.
func Select(s beam.Scope, files beam.PCollection, opt Options) (selected, entries, tally beam.PCollection) {
	s = s.Scope("state.Select")
	cands := beam.ParDo(s, &statFn{Model: opt.Model, Run: opt.Run}, beam.Reshuffle(s, files))
	ledger := beam.ParDo(s, &ledgerFn{Ledger: opt.Ledger}, beam.Impulse(s))
	joined := beam.CoGroupByKey(s, cands, ledger)
	return beam.ParDo3(s, &decideFn{}, joined)
}

// statFn stats a listed file and keys it by URI.
type statFn struct{ Model, Run string }

func (f *statFn) ProcessElement(ctx context.Context, file read.File, emit func(string, candidate)) error {
	c := candidate{File: file}
	if file.Error == "" {
		if info, err := storage.Stat(ctx, file.URI); err == nil {
			c.Entry, c.Stat = EntryOf(file.URI, info, f.Model, f.Run), true
		}
	}
	emit(file.URI, c)
	return nil
}

// ledgerFn reads the ledger and keys its entries by URI.
type ledgerFn struct{ Ledger string }

func (f *ledgerFn) ProcessElement(ctx context.Context, _ []byte, emit func(string, Entry)) error {
	entries, err := Read(ctx, f.Ledger)
	if err != nil {
		return err
	}
	for _, e := range entries {
		emit(e.URI, e)
	}
	return nil
}

// decideFn compares a listed file with its ledger entry.
type decideFn struct{}

func (f *decideFn) ProcessElement(_ string, cands func(*candidate) bool, olds func(*Entry) bool,
	emitFile func(read.File), emitEntry func(Entry), emitTally func(Tally)) {
	var old *Entry
	var e Entry
	for olds(&e) {
		o := e
		old = &o
	}
	var c candidate
	var listed []candidate
	for cands(&c) {
		// A file whose manifest rows are not adjacent is listed once per
		// run of rows (read.ListEach): count and select it once.
		if c.File.Error == "" {
			if i := slices.IndexFunc(listed, func(l candidate) bool { return l.File.Error == "" }); i >= 0 {
				listed[i].File.Items = append(listed[i].File.Items, c.File.Items...)
				continue
			}
		}
		listed = append(listed, c)
	}
	for _, c := range listed {
		t := Tally{Listed: 1}
		why := New
		if c.Stat {
			why = Compare(old, c.Entry)
		}
		switch why {
		case New:
			t.New = 1
		case Changed:
			t.Changed = 1
		case ModelChanged:
			t.ModelChanged = 1
		default:
			t.Unchanged = 1
		}
		emitTally(t)
		if why == Unchanged {
			continue
		}
		emitFile(c.File)
		if c.Stat {
			emitEntry(c.Entry)
		}
	}
}

// WriteEntries writes, into the staging folder dir, the ledger entries of
// the files without any failure (EntriesFile) and the summed tally
// (TallyFile). entries is PCollection<Entry>, failures
// PCollection<read.Failure>, tally PCollection<Tally>.
func WriteEntries(s beam.Scope, entries, failures, tally beam.PCollection, dir string) {
	s = s.Scope("state.WriteEntries")
	beam.ParDo0(s, &writeFn{Dir: dir}, beam.Impulse(s),
		beam.SideInput{Input: entries}, beam.SideInput{Input: failures}, beam.SideInput{Input: tally})
}

type writeFn struct{ Dir string }

func (f *writeFn) ProcessElement(ctx context.Context, _ []byte, entries func(*Entry) bool, failures func(*read.Failure) bool, tally func(*Tally) bool) error {
	failed := map[string]bool{}
	var fl read.Failure
	for failures(&fl) {
		failed[fl.URI] = true
	}
	var ok []Entry
	var e Entry
	for entries(&e) {
		if !failed[e.URI] {
			ok = append(ok, e)
		}
	}
	if err := storage.WriteFileAtomic(ctx, storage.Join(f.Dir, EntriesFile), Format(ok)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	var sum, t Tally
	for tally(&t) {
		sum = sum.Add(t)
	}
	b, _ := json.Marshal(sum)
	if err := storage.WriteFileAtomic(ctx, storage.Join(f.Dir, TallyFile), b); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}
