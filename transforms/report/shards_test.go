package report

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/multiad/multiad/internal/shard"
)

// TestShardsMerge spills random lines through small shards and several merge
// passes and checks the merged stream against sorting every line in memory
// (what finalFn did before shards), and that no shard is left behind.
func TestShardsMerge(t *testing.T) {
	defer func(b, f int) { spillBytes, mergeFanIn = b, f }(spillBytes, mergeFanIn)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct{ n, spill, fanIn int }{{0, 100, 4}, {1, 100, 4}, {500, 1 << 20, 64}, {500, 300, 64}, {1000, 1000, 3}, {200, 100, 2}} {
		spillBytes, mergeFanIn = tc.spill, tc.fanIn
		dir := t.TempDir()
		var all []Line
		for i := 0; i < tc.n; i++ {
			l := Line{Key: sortKey(fmt.Sprintf("file:///d/%d.png", r.IntN(tc.n/2+1)), r.IntN(3)-1),
				JSON: fmt.Sprintf(`{"i":%d,"s":"%x"}`, i, r.Uint64()), Score: r.NormFloat64(), Label: r.IntN(3) - 1,
				Anomalous: r.IntN(2) == 1, Domain: []string{"", "picture 1ch 8-bit", "MR 1ch 16-bit"}[r.IntN(3)]}
			all = append(all, l)
		}
		// Several spillers, as several bundles would.
		var uris []string
		sf := scoresShards()
		sp := []*shard.Spiller[Line]{sf.NewSpiller(dir), sf.NewSpiller(dir), sf.NewSpiller(dir)}
		emit := func(u string) { uris = append(uris, u) }
		for i, l := range all {
			if err := sp[i%3].Add(ctx, l, emit); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range sp {
			if err := s.Flush(ctx, emit); err != nil {
				t.Fatal(err)
			}
		}
		uris, err := sf.Reduce(ctx, dir, uris)
		if err != nil {
			t.Fatal(err)
		}
		if len(uris) > tc.fanIn {
			t.Errorf("n=%d: %d shards left after reduceShards, want <= %d", tc.n, len(uris), tc.fanIn)
		}
		var got []Line
		if err := sf.Merge(ctx, uris, func(l *Line) error { got = append(got, *l); return nil }); err != nil {
			t.Fatal(err)
		}
		if err := shard.Remove(ctx, uris); err != nil {
			t.Fatal(err)
		}
		want := slices.Clone(all)
		sort.SliceStable(want, func(i, j int) bool {
			if want[i].Key != want[j].Key {
				return want[i].Key < want[j].Key
			}
			return want[i].JSON < want[j].JSON
		})
		if len(got) != len(want) {
			t.Fatalf("n=%d spill=%d fan-in=%d: merged %d lines, want %d", tc.n, tc.spill, tc.fanIn, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("n=%d spill=%d fan-in=%d: line %d is %+v, want %+v", tc.n, tc.spill, tc.fanIn, i, got[i], want[i])
			}
		}
		if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
			t.Errorf("n=%d: files left: %v", tc.n, left)
		}
	}
}

// TestShardsCorrupt checks that a truncated or damaged shard is an error
// naming the shard, never a short scores.jsonl.
func TestShardsCorrupt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sf := scoresShards()
	sp := sf.NewSpiller(dir)
	for _, l := range []Line{{Key: "a", JSON: `{"a":1}`, Score: 1}, {Key: "b", JSON: `{"b":2}`, Score: 2, Label: 1}} {
		if err := sp.Add(ctx, l, func(string) { t.Fatal("spilled before Flush") }); err != nil {
			t.Fatal(err)
		}
	}
	var u string
	if err := sp.Flush(ctx, func(uri string) { u = uri }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(u)
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"truncated": b[:len(b)-3],
		"huge line": append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}, b...),
	} {
		if err := os.WriteFile(u, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		n := 0
		err := sf.Merge(ctx, []string{u}, func(*Line) error { n++; return nil })
		if !errors.Is(err, ErrShard) {
			t.Errorf("%s: got %v after %d lines, want ErrShard", name, err, n)
		}
	}
}
