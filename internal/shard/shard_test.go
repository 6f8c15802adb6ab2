package shard

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"testing"
)

type rec struct {
	K string
	V int64
}

func recFormat(spill, fanIn int) *Format[rec] {
	return &Format[rec]{
		Name: "test",
		Compare: func(a, b *rec) int {
			if c := cmp.Compare(a.K, b.K); c != 0 {
				return c
			}
			return cmp.Compare(a.V, b.V)
		},
		Append: func(b []byte, v *rec) []byte {
			b = binary.AppendUvarint(b, uint64(len(v.K)))
			return binary.AppendVarint(append(b, v.K...), v.V)
		},
		Decode: func(b []byte) (rec, error) {
			n, k := binary.Uvarint(b)
			if k <= 0 || uint64(len(b)-k) < n {
				return rec{}, errors.New("bad key")
			}
			key := string(b[k : k+int(n)])
			v, m := binary.Varint(b[k+int(n):])
			if m <= 0 || k+int(n)+m != len(b) {
				return rec{}, errors.New("bad value")
			}
			return rec{key, v}, nil
		},
		SpillBytes: spill, FanIn: fanIn,
	}
}

// TestMerge spills random records from several spillers (as several
// bundles would) through small shards and several merge passes, and checks
// the merged stream against sorting every record in memory, and that no
// shard is left behind.
func TestMerge(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ n, spill, fanIn int }{{0, 10, 2}, {1, 10, 2}, {500, 1 << 20, 64}, {500, 40, 64}, {1000, 100, 3}, {300, 10, 2}} {
		f := recFormat(tc.spill, tc.fanIn)
		dir := t.TempDir()
		var all []rec
		for i := 0; i < tc.n; i++ {
			all = append(all, rec{K: fmt.Sprintf("k%d", r.IntN(tc.n/3+1)), V: r.Int64N(1000) - 500})
		}
		sp := []*Spiller[rec]{f.NewSpiller(dir), f.NewSpiller(dir), f.NewSpiller(dir)}
		var uris []string
		emit := func(u string) { uris = append(uris, u) }
		for i, v := range all {
			if err := sp[i%3].Add(ctx, v, emit); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range sp {
			if err := s.Flush(ctx, emit); err != nil {
				t.Fatal(err)
			}
		}
		if tc.n >= 500 && tc.spill < 1000 && len(uris) < 10 {
			t.Errorf("n=%d spill=%d: %d shards, want many (the test must exercise the merge)", tc.n, tc.spill, len(uris))
		}
		uris, err := f.Reduce(ctx, dir, uris)
		if err != nil {
			t.Fatal(err)
		}
		if len(uris) > max(tc.fanIn, 1) {
			t.Errorf("n=%d: %d shards left after Reduce, want <= %d", tc.n, len(uris), tc.fanIn)
		}
		var got []rec
		if err := f.Merge(ctx, uris, func(v *rec) error { got = append(got, *v); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := Remove(ctx, uris); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(all)
		sort.SliceStable(want, func(i, j int) bool {
			if want[i].K != want[j].K {
				return want[i].K < want[j].K
			}
			return want[i].V < want[j].V
		})
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d spill=%d fan-in=%d: merged %d records, want %d (in order)", tc.n, tc.spill, tc.fanIn, len(got), len(want))
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("n=%d: files left: %v", tc.n, left)
		}
	}
}

// TestCorrupt checks that a truncated or damaged shard is an error naming
// the shard, never a short stream.
func TestCorrupt(t *testing.T) {
	ctx := context.Background()
	f := recFormat(0, 0)
	s := f.NewSpiller(t.TempDir())
	for _, v := range []rec{{"b", 2}, {"a", 1}} {
		if err := s.Add(ctx, v, func(string) { t.Fatal("spilled before Flush") }); err != nil {
			t.Fatal(err)
		}
	}
	var u string
	if err := s.Flush(ctx, func(uri string) { u = uri }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(u)
	if err != nil {
		t.Fatal(err)
	}
	var got []rec
	if err := f.Merge(ctx, []string{u}, func(v *rec) error { got = append(got, *v); return nil }); err != nil || !slices.Equal(got, []rec{{"a", 1}, {"b", 2}}) {
		t.Fatalf("intact shard: %v, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"truncated":  b[:len(b)-1],
		"huge":       append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}, b...),
		"bad record": append(slices.Clone(b), 1, 0xff),
	} {
		if err := os.WriteFile(u, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		n := 0
		err := f.Merge(ctx, []string{u}, func(*rec) error { n++; return nil })
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: got %v after %d records, want ErrCorrupt", name, err, n)
		}
	}
}

// TestMergeMemory checks that a merge's memory does not grow with its
// shards' buffers: a full fan-in of small shards must allocate well under
// 64 KiB per shard (256 KiB read buffers held 18 MiB at the end of a
// 100,000-image run).
func TestMergeMemory(t *testing.T) {
	ctx := context.Background()
	f := recFormat(1, DefaultFanIn) // one record per shard
	dir := t.TempDir()
	sp := f.NewSpiller(dir)
	var uris []string
	for i := range DefaultFanIn {
		if err := sp.Add(ctx, rec{K: fmt.Sprint(i), V: int64(i)}, func(u string) { uris = append(uris, u) }); err != nil {
			t.Fatal(err)
		}
	}
	if len(uris) != DefaultFanIn {
		t.Fatalf("%d shards, want %d", len(uris), DefaultFanIn)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	if err := f.Merge(ctx, uris, func(*rec) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n != DefaultFanIn {
		t.Fatalf("merged %d records, want %d", n, DefaultFanIn)
	}
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(DefaultFanIn)*64<<10; got > limit {
		t.Errorf("merging %d shards allocated %d KiB, want at most %d KiB", DefaultFanIn, got>>10, limit>>10)
	}
}
