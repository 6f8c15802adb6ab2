package report

import (
	"encoding/binary"
	"fmt"

	"github.com/multiad/multiad/internal/shard"
)

// scores.jsonl is sorted by key without holding every line: lineFn spills
// its lines in sorted shards of at most spillBytes (package shard), and
// finalFn merges the shards it is handed, mergeFanIn at a time.
var (
	spillBytes = shard.DefaultSpillBytes
	mergeFanIn = shard.DefaultFanIn
)

// ErrShard reports a scores shard that cannot be read back.
var ErrShard = shard.ErrCorrupt

// scoresShards is the shard format of scores.jsonl lines.
func scoresShards() *shard.Format[Line] {
	return &shard.Format[Line]{Name: "scores", Compare: lineCmp, Append: appendShardLine, Decode: decodeShardLine,
		SpillBytes: spillBytes, FanIn: mergeFanIn}
}

// lineCmp orders lines as scores.jsonl lists them: by key, then (for
// duplicate keys) by their JSON, so the file does not depend on how the
// lines were split into shards.
func lineCmp(a, b *Line) int {
	switch {
	case a.Key < b.Key:
		return -1
	case a.Key > b.Key:
		return 1
	case a.JSON < b.JSON:
		return -1
	case a.JSON > b.JSON:
		return 1
	}
	return 0
}

// appendShardLine appends l's shard record to b.
func appendShardLine(b []byte, l *Line) []byte {
	b = shard.AppendString(shard.AppendString(b, l.Key), l.JSON)
	b = binary.AppendVarint(shard.AppendFloat64(b, l.Score), int64(l.Label))
	return shard.AppendString(shard.AppendBool(b, l.Anomalous), l.Domain)
}

// decodeShardLine decodes a record of appendShardLine.
func decodeShardLine(b []byte) (Line, error) {
	d := shard.Decoder{B: b}
	l := Line{Key: d.String(), JSON: d.String(), Score: d.Float64(), Label: int(d.Varint()), Anomalous: d.Bool()}
	l.Domain = d.String()
	if err := d.End(); err != nil {
		return Line{}, fmt.Errorf("report: scores line: %w", err)
	}
	return l, nil
}
