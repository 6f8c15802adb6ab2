package study_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/report"
	"github.com/multiad/multiad/transforms/score"
	"github.com/multiad/multiad/transforms/study"
)

// scored returns a few scored slices of two DICOM series of one study and
// of one NIfTI volume, as score.Score would emit them.
func scored() []score.Result {
	var rs []score.Result
	add := func(uri string, index int, st, se string, s float64, label int) {
		rs = append(rs, score.Result{Item: read.Item{URI: uri, Index: index, IndexKind: "slice", Label: label, MaskIndex: -1,
			Study: st, Series: se}, Score: s, Anomalous: s > 0.5})
	}
	add("gs://pacs/st1/flair/1.dcm", -1, "1.2.826.0.1.1", "1.2.826.0.1.1.1", 0.31, 0)
	add("gs://pacs/st1/flair/2.dcm", -1, "1.2.826.0.1.1", "1.2.826.0.1.1.1", 0.72, 1)
	add("gs://pacs/st1/flair/3.dcm", -1, "1.2.826.0.1.1", "1.2.826.0.1.1.1", 0.64, 1)
	add("gs://pacs/st1/t1/1.dcm", -1, "1.2.826.0.1.1", "1.2.826.0.1.1.2", 0.22, 0)
	add("gs://vols/p7.nii.gz", 0, "", "", 0.12, 0)
	add("gs://vols/p7.nii.gz", 1, "", "", 0.18, 0)
	return rs
}

// Groups combines scored slices into one Group per study and per DICOM
// series; Write writes studies.jsonl (studies first, highest score first),
// the top slices' heatmaps and the digest that report.Finish reads.
func ExampleGroups() {
	dir, _ := os.MkdirTemp("", "study-example")
	defer os.RemoveAll(dir)

	p, s := beam.NewPipelineWithRoot()
	results := beam.CreateList(s, scored())
	k, _ := study.ParseScore("topk:2") // the mean of the two highest slices
	groups := study.Groups(s, results, study.Options{K: k, Threshold: 0.5})
	study.Write(s, study.WriteOptions{Dir: dir, Score: "topk:2", Heatmaps: report.HeatmapsNone}, groups)
	if err := beamx.Run(context.Background(), p); err != nil {
		log.Fatal(err)
	}

	f, err := os.Open(filepath.Join(dir, study.File))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r study.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			log.Fatal(err)
		}
		if r.Series == "" {
			r.Series = "-"
		}
		fmt.Printf("%-6s %-22s %-16s score %.3f anomalous %-5v label %d slices %d\n",
			r.Level, filepath.Base(r.Study), r.Series, r.Score, r.Anomalous, *r.Label, r.Slices)
	}
	// Output:
	// study  1.2.826.0.1.1          -                score 0.680 anomalous true  label 1 slices 4
	// study  p7.nii.gz              -                score 0.150 anomalous false label 0 slices 2
	// series 1.2.826.0.1.1          1.2.826.0.1.1.1  score 0.680 anomalous true  label 1 slices 3
	// series 1.2.826.0.1.1          1.2.826.0.1.1.2  score 0.220 anomalous false label 0 slices 1
}

// Identify hashes the UIDs before anything is written, so that outputs
// carry stable pseudonyms instead of the UIDs.
func ExampleIdentify() {
	fmt.Println(study.HashUID("site-secret", "1.2.826.0.1.1"))
	// Output: 6dba2ba909b81036648acf1ca7dd2875
}

// Aggregate is the same combination without a pipeline, e.g. over the
// scores.jsonl of earlier runs.
func ExampleAggregate() {
	var slices []study.Slice
	for _, r := range scored() {
		slices = append(slices, study.FromResult(r))
	}
	for _, g := range study.Aggregate(slices, &study.CombineFn{K: 1, Threshold: 0.5}) {
		if g.Level == study.LevelStudy {
			fmt.Printf("%s: max %.2f over %d slices, %d series, top slice %s\n",
				filepath.Base(g.Study), g.Score, g.Slices, g.SeriesCount, g.Top[0].URI)
		}
	}
	// Output:
	// 1.2.826.0.1.1: max 0.72 over 4 slices, 2 series, top slice gs://pacs/st1/flair/2.dcm
	// p7.nii.gz: max 0.18 over 2 slices, 0 series, top slice gs://vols/p7.nii.gz
}
