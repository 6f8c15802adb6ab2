// Package shard sorts a stream of records that need not fit in memory, for
// the output files a pipeline writes in order (scores.jsonl, studies.jsonl):
// the DoFns that format the records spill them in sorted shards (sidecar
// files of at most Format.SpillBytes of encoded records, in the run's
// staging folder, so that a retried bundle's orphans are never committed)
// and hand on only the shards' names; the final step merges the shards,
// Format.FanIn at a time, into one sorted stream.
//
// A shard is a sequence of records, each its encoding (Format.Append)
// preceded by its length as a uvarint.
package shard

import (
	"bufio"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/multiad/multiad/io/storage"
)

// Defaults of Format.SpillBytes and Format.FanIn. A Spiller's buffer is
// live memory for the whole run once the input fills it (about twice
// SpillBytes with its entries), so it is small: at 1 MiB of lines, 100,000
// scores.jsonl lines make about 40 shards, merged in one pass.
const (
	DefaultSpillBytes = 1 << 20
	DefaultFanIn      = 64
)

// readBuffer is each merged shard's read buffer. A merge holds up to FanIn
// of them at once, at the end of the run, where the peak memory is: at 256
// KiB, the 70 scores' and studies' shards of 100,000 images held about 18
// MiB there; at 32 KiB a full fan-in of 64 holds 2 MiB. The records are read
// in order, so the operating system's read-ahead does the rest.
const readBuffer = 32 << 10

// maxRecord bounds a record's length, so that a corrupt length field cannot
// make the reader allocate more.
const maxRecord = 1 << 30

// ErrCorrupt reports a shard that cannot be read back.
var ErrCorrupt = errors.New("corrupt shard")

// Format describes the records of one kind of shard.
type Format[T any] struct {
	// Name names the shard files: _<Name>-<random>.shard.
	Name string
	// Compare orders the records. It must order distinct records (not
	// only their keys) so that the merged stream does not depend on how
	// the records were split into shards.
	Compare func(a, b *T) int
	// Append appends the encoding of v to b; Decode decodes a record that
	// Append encoded.
	Append func(b []byte, v *T) []byte
	Decode func(b []byte) (T, error)
	// SpillBytes is the most bytes of encoded records a Spiller buffers
	// before it writes a shard (0: DefaultSpillBytes); FanIn the most
	// shards merged at once (0: DefaultFanIn).
	SpillBytes, FanIn int
}

func (f *Format[T]) spillBytes() int {
	if f.SpillBytes > 0 {
		return f.SpillBytes
	}
	return DefaultSpillBytes
}

func (f *Format[T]) fanIn() int {
	if f.FanIn > 1 {
		return f.FanIn
	}
	return DefaultFanIn
}

// Spiller buffers records and writes them as sorted shards into a folder.
type Spiller[T any] struct {
	f     *Format[T]
	dir   string
	buf   []entry[T]
	arena []byte
}

// entry is a buffered record and its encoding's place in the arena.
type entry[T any] struct {
	v        T
	off, end int
}

// NewSpiller returns a Spiller writing shards of format f into dir.
func (f *Format[T]) NewSpiller(dir string) *Spiller[T] { return &Spiller[T]{f: f, dir: dir} }

// Add buffers v; when the buffer is full it writes it as a shard and calls
// emit with the shard's URI (a DoFn's emitter of shard names).
func (s *Spiller[T]) Add(ctx context.Context, v T, emit func(string)) error {
	off := len(s.arena)
	s.arena = s.f.Append(s.arena, &v)
	s.buf = append(s.buf, entry[T]{v: v, off: off, end: len(s.arena)})
	if len(s.arena) < s.f.spillBytes() {
		return nil
	}
	return s.Flush(ctx, emit)
}

// Flush writes the buffered records as one sorted shard and calls emit
// with its URI; it does nothing when nothing is buffered.
func (s *Spiller[T]) Flush(ctx context.Context, emit func(string)) error {
	if len(s.buf) == 0 {
		return nil
	}
	slices.SortFunc(s.buf, func(a, b entry[T]) int { return s.f.Compare(&a.v, &b.v) })
	uri, err := s.f.write(ctx, s.dir, func(emit func([]byte) error) error {
		for _, e := range s.buf {
			if err := emit(s.arena[e.off:e.end]); err != nil {
				return err
			}
		}
		return nil
	})
	clear(s.buf)
	s.buf, s.arena = s.buf[:0], s.arena[:0]
	if uri != "" {
		emit(uri)
	}
	return err
}

// newURI names a new shard in dir (random, so that retried bundles never
// collide).
func (f *Format[T]) newURI(dir string) string {
	var id [12]byte
	rand.Read(id[:])
	return storage.Join(dir, "_"+f.Name+"-"+hex.EncodeToString(id[:])+".shard")
}

// write writes a new shard in dir with the encoded records fill emits, in
// order.
func (f *Format[T]) write(ctx context.Context, dir string, fill func(emit func([]byte) error) error) (string, error) {
	uri := f.newURI(dir)
	w, err := storage.Create(ctx, uri)
	if err != nil {
		return "", fmt.Errorf("shard: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n [binary.MaxVarintLen64]byte
	err = fill(func(rec []byte) error {
		if _, err := bw.Write(binary.AppendUvarint(n[:0], uint64(len(rec)))); err != nil {
			return err
		}
		_, err := bw.Write(rec)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("shard: writing %s: %w", uri, err)
	}
	return uri, nil
}

// reader reads one shard's records in order.
type reader[T any] struct {
	uri string
	rc  io.ReadCloser
	br  *bufio.Reader
	buf []byte
	cur T
}

func (f *Format[T]) open(ctx context.Context, uri string) (*reader[T], error) {
	rc, err := storage.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("shard: %w", err)
	}
	return &reader[T]{uri: uri, rc: rc, br: bufio.NewReaderSize(rc, readBuffer)}, nil
}

// next reads the next record into r.cur; it returns io.EOF at a clean end.
func (r *reader[T]) next(f *Format[T]) error {
	n, err := binary.ReadUvarint(r.br)
	if err == io.EOF {
		return io.EOF
	}
	fail := func(err error) error {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("shard: %w %s: %v", ErrCorrupt, r.uri, err)
	}
	if err != nil {
		return fail(err)
	}
	if n > maxRecord {
		return fail(fmt.Errorf("record of %d bytes", n))
	}
	if uint64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.br, r.buf); err != nil {
		return fail(err)
	}
	if r.cur, err = f.Decode(r.buf); err != nil {
		return fail(err)
	}
	return nil
}

// mergeHeap is a min-heap of shard readers by their current record.
type mergeHeap[T any] struct {
	f  *Format[T]
	rs []*reader[T]
}

func (h *mergeHeap[T]) Len() int           { return len(h.rs) }
func (h *mergeHeap[T]) Less(i, j int) bool { return h.f.Compare(&h.rs[i].cur, &h.rs[j].cur) < 0 }
func (h *mergeHeap[T]) Swap(i, j int)      { h.rs[i], h.rs[j] = h.rs[j], h.rs[i] }
func (h *mergeHeap[T]) Push(x any)         { h.rs = append(h.rs, x.(*reader[T])) }
func (h *mergeHeap[T]) Pop() any {
	r := h.rs[len(h.rs)-1]
	h.rs = h.rs[:len(h.rs)-1]
	return r
}

// Merge calls emit with every record of the sorted shards uris, in order
// (at most FanIn of them: Reduce first). emit must not keep the pointer.
func (f *Format[T]) Merge(ctx context.Context, uris []string, emit func(*T) error) error {
	h := &mergeHeap[T]{f: f, rs: make([]*reader[T], 0, len(uris))}
	defer func() {
		for _, r := range h.rs {
			r.rc.Close()
		}
	}()
	for _, u := range uris {
		r, err := f.open(ctx, u)
		if err != nil {
			return err
		}
		if err := r.next(f); err == io.EOF {
			r.rc.Close()
			continue
		} else if err != nil {
			r.rc.Close()
			return err
		}
		h.rs = append(h.rs, r)
	}
	heap.Init(h)
	for len(h.rs) > 0 {
		r := h.rs[0]
		if err := emit(&r.cur); err != nil {
			return err
		}
		switch err := r.next(f); {
		case err == io.EOF:
			r.rc.Close()
			heap.Pop(h)
		case err != nil:
			return err
		default:
			heap.Fix(h, 0)
		}
	}
	return nil
}

// Reduce merges uris, FanIn at a time, into new shards in dir until at
// most FanIn remain, removing the merged ones; it returns the remaining
// shards, sorted by name so that the result does not depend on the order
// the names were collected in.
func (f *Format[T]) Reduce(ctx context.Context, dir string, uris []string) ([]string, error) {
	uris = slices.Sorted(slices.Values(uris))
	for fan := f.fanIn(); len(uris) > fan; {
		var next []string
		for i := 0; i < len(uris); i += fan {
			group := uris[i:min(i+fan, len(uris))]
			if len(group) == 1 {
				next = append(next, group[0])
				continue
			}
			var buf []byte
			u, err := f.write(ctx, dir, func(emit func([]byte) error) error {
				return f.Merge(ctx, group, func(v *T) error {
					buf = f.Append(buf[:0], v)
					return emit(buf)
				})
			})
			if err != nil {
				return nil, err
			}
			next = append(next, u)
			if err := Remove(ctx, group); err != nil {
				return nil, err
			}
		}
		uris = next
	}
	return uris, nil
}

// Remove removes shards.
func Remove(ctx context.Context, uris []string) error {
	for _, u := range uris {
		if err := storage.Remove(ctx, u); err != nil {
			return fmt.Errorf("shard: %w", err)
		}
	}
	return nil
}
