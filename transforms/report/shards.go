package report

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
	"math"
	"slices"

	"github.com/multiad/multiad/io/storage"
)

// scores.jsonl is sorted by key without holding every line: lineFn spills
// its lines in sorted shards of at most spillBytes of JSON (sidecar files in
// the staging folder, so a retried bundle's orphans are never committed),
// and finalFn merges the shards it is handed, mergeFanIn at a time.
var (
	spillBytes = 4 << 20
	mergeFanIn = 64
)

const (
	shardPrefix  = "_scores-"
	shardSuffix  = ".shard"
	maxShardLine = 1 << 30 // a corrupt length field cannot make the reader allocate more
)

// ErrShard reports a scores shard that cannot be read back.
var ErrShard = errors.New("report: corrupt scores shard")

// lineLess orders lines as scores.jsonl lists them: by key, then (for
// duplicate keys) by their JSON, so the file does not depend on how the
// lines were split into shards.
func lineLess(a, b *Line) bool {
	if a.Key != b.Key {
		return a.Key < b.Key
	}
	return a.JSON < b.JSON
}

func lineCmp(a, b Line) int {
	if lineLess(&a, &b) {
		return -1
	}
	if lineLess(&b, &a) {
		return 1
	}
	return 0
}

// spiller buffers lines and writes them as sorted shards into dir.
type spiller struct {
	dir   string
	buf   []Line
	bytes int
}

// add buffers l and reports the shard written when the buffer was full
// ("" otherwise).
func (s *spiller) add(ctx context.Context, l Line) (string, error) {
	s.buf = append(s.buf, l)
	s.bytes += len(l.Key) + len(l.JSON)
	if s.bytes < spillBytes {
		return "", nil
	}
	return s.flush(ctx)
}

// flush writes the buffered lines as one sorted shard and returns its URI
// ("" when nothing was buffered).
func (s *spiller) flush(ctx context.Context) (string, error) {
	if len(s.buf) == 0 {
		return "", nil
	}
	slices.SortFunc(s.buf, lineCmp)
	uri, err := writeShard(ctx, s.dir, s.buf)
	clear(s.buf)
	s.buf, s.bytes = s.buf[:0], 0
	return uri, err
}

// newShardURI names a new shard in dir (random, so that retried bundles
// never collide).
func newShardURI(dir string) string {
	var id [12]byte
	rand.Read(id[:])
	return storage.Join(dir, shardPrefix+hex.EncodeToString(id[:])+shardSuffix)
}

// writeShard writes lines (sorted) to a new shard file in dir.
func writeShard(ctx context.Context, dir string, lines []Line) (string, error) {
	uri := newShardURI(dir)
	w, err := storage.Create(ctx, uri)
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var rec []byte
	for i := range lines {
		rec = appendShardLine(rec[:0], &lines[i])
		if _, err := bw.Write(rec); err != nil {
			w.Close()
			return "", fmt.Errorf("report: writing %s: %w", uri, err)
		}
	}
	if err := bw.Flush(); err != nil {
		w.Close()
		return "", fmt.Errorf("report: writing %s: %w", uri, err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("report: writing %s: %w", uri, err)
	}
	return uri, nil
}

// appendShardLine appends l's shard record to b.
func appendShardLine(b []byte, l *Line) []byte {
	b = binary.AppendUvarint(b, uint64(len(l.Key)))
	b = append(b, l.Key...)
	b = binary.AppendUvarint(b, uint64(len(l.JSON)))
	b = append(b, l.JSON...)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(l.Score))
	b = binary.AppendVarint(b, int64(l.Label))
	flag := byte(0)
	if l.Anomalous {
		flag = 1
	}
	b = append(b, flag)
	b = binary.AppendUvarint(b, uint64(len(l.Domain)))
	return append(b, l.Domain...)
}

// shardReader reads one shard's lines in order.
type shardReader struct {
	uri string
	rc  io.ReadCloser
	br  *bufio.Reader
	cur Line
}

func openShard(ctx context.Context, uri string) (*shardReader, error) {
	rc, err := storage.Open(ctx, uri)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return &shardReader{uri: uri, rc: rc, br: bufio.NewReaderSize(rc, 256<<10)}, nil
}

// next reads the next line into r.cur; it returns io.EOF at a clean end.
func (r *shardReader) next() error {
	str := func() (string, error) {
		n, err := binary.ReadUvarint(r.br)
		if err != nil {
			return "", err
		}
		if n > maxShardLine {
			return "", fmt.Errorf("line of %d bytes", n)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r.br, b); err != nil {
			return "", err
		}
		return string(b), nil
	}
	key, err := str()
	if err == io.EOF {
		return io.EOF
	}
	fail := func(err error) error {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%w %s: %v", ErrShard, r.uri, err)
	}
	if err != nil {
		return fail(err)
	}
	js, err := str()
	if err != nil {
		return fail(err)
	}
	var f [8]byte
	if _, err := io.ReadFull(r.br, f[:]); err != nil {
		return fail(err)
	}
	label, err := binary.ReadVarint(r.br)
	if err != nil {
		return fail(err)
	}
	flag, err := r.br.ReadByte()
	if err != nil {
		return fail(err)
	}
	if flag > 1 {
		return fail(fmt.Errorf("anomalous flag %d", flag))
	}
	domain, err := str()
	if err != nil {
		return fail(err)
	}
	r.cur = Line{Key: key, JSON: js, Score: math.Float64frombits(binary.LittleEndian.Uint64(f[:])), Label: int(label),
		Anomalous: flag == 1, Domain: domain}
	return nil
}

// mergeHeap is a min-heap of shard readers by their current line.
type mergeHeap []*shardReader

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return lineLess(&h[i].cur, &h[j].cur) }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(*shardReader)) }
func (h *mergeHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// mergeShards calls emit with every line of the sorted shards, in order.
func mergeShards(ctx context.Context, uris []string, emit func(*Line) error) (err error) {
	h := make(mergeHeap, 0, len(uris))
	defer func() {
		for _, r := range h {
			r.rc.Close()
		}
	}()
	for _, u := range uris {
		r, err := openShard(ctx, u)
		if err != nil {
			return err
		}
		if err := r.next(); err == io.EOF {
			r.rc.Close()
			continue
		} else if err != nil {
			r.rc.Close()
			return err
		}
		h = append(h, r)
	}
	heap.Init(&h)
	for len(h) > 0 {
		r := h[0]
		if err := emit(&r.cur); err != nil {
			return err
		}
		switch err := r.next(); {
		case err == io.EOF:
			r.rc.Close()
			heap.Pop(&h)
		case err != nil:
			return err
		default:
			heap.Fix(&h, 0)
		}
	}
	return nil
}

// reduceShards merges uris, mergeFanIn at a time, into new shards in dir
// until at most mergeFanIn remain, removing the merged ones; it returns the
// remaining shards.
func reduceShards(ctx context.Context, dir string, uris []string) ([]string, error) {
	for len(uris) > mergeFanIn {
		var next []string
		for i := 0; i < len(uris); i += mergeFanIn {
			group := uris[i:min(i+mergeFanIn, len(uris))]
			if len(group) == 1 {
				next = append(next, group[0])
				continue
			}
			s := &spiller{dir: dir}
			var out []string
			err := mergeShards(ctx, group, func(l *Line) error {
				u, err := s.add(ctx, *l)
				if u != "" {
					out = append(out, u)
				}
				return err
			})
			if err == nil {
				var u string
				if u, err = s.flush(ctx); u != "" {
					out = append(out, u)
				}
			}
			if err != nil {
				return nil, err
			}
			// Consecutive spills of one sorted stream are one sorted run:
			// concatenate them into a single shard.
			u, err := concatShards(ctx, dir, out)
			if err != nil {
				return nil, err
			}
			next = append(next, u)
			if err := removeShards(ctx, group); err != nil {
				return nil, err
			}
		}
		uris = next
	}
	return uris, nil
}

// concatShards joins shards whose lines follow each other in order into one.
func concatShards(ctx context.Context, dir string, uris []string) (string, error) {
	if len(uris) == 1 {
		return uris[0], nil
	}
	uri := newShardURI(dir)
	w, err := storage.Create(ctx, uri)
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	for _, u := range uris {
		rc, err := storage.Open(ctx, u)
		if err != nil {
			w.Close()
			return "", fmt.Errorf("report: %w", err)
		}
		_, err = io.Copy(w, rc)
		rc.Close()
		if err != nil {
			w.Close()
			return "", fmt.Errorf("report: writing %s: %w", uri, err)
		}
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("report: writing %s: %w", uri, err)
	}
	return uri, removeShards(ctx, uris)
}

func removeShards(ctx context.Context, uris []string) error {
	for _, u := range uris {
		if err := storage.Remove(ctx, u); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}
