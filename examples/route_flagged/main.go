// Command route_flagged is an example of composing multiad's Beam
// transforms into a pipeline of your own: it reads and scores every image
// of an input, groups the slices into studies, and copies every file of
// each flagged study (study score above the bundle's threshold) into a
// folder or bucket of its own, one subfolder per study, for review.
//
//	go run ./examples/route_flagged --model BUNDLE --input gs://pacs/incoming/ --flagged gs://review/flagged/
//
// It runs on Prism locally, or on Dataflow with Beam's runner flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/multiad/multiad/io/storage"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/transforms/read"
	"github.com/multiad/multiad/transforms/score"
	"github.com/multiad/multiad/transforms/study"
)

// maxFileBytes bounds the size of a file the router copies.
const maxFileBytes = 4 << 30

// Config configures the pipeline.
type Config struct {
	// Model is the bundle, Input the images (as for multiad score).
	Model, Input string
	// Flagged is the folder or bucket prefix that flagged studies' files
	// are copied to.
	Flagged string
	// StudyScore is max or topk:K.
	StudyScore string
}

var routedFiles = beam.NewCounter("route_flagged", "files_copied")

func init() {
	register.DoFn2x0[study.Group, func(string, bool)](&flaggedFn{})
	register.DoFn2x0[score.Result, func(string, string)](&fileFn{})
	register.DoFn4x1[context.Context, string, func(*bool) bool, func(*string) bool, error](&routeFn{})
	register.Emitter2[string, bool]()
	register.Emitter2[string, string]()
	register.Iter1[bool]()
	register.Iter1[string]()
}

// Build adds the pipeline to s.
func Build(ctx context.Context, s beam.Scope, cfg Config) error {
	b, err := bundle.Load(ctx, cfg.Model)
	if err != nil {
		return err
	}
	k, err := study.ParseScore(cfg.StudyScore)
	if err != nil {
		return err
	}
	in := read.ReadImages(s, cfg.Input, read.Options{})
	results, _, _ := score.Score(s, in.Images, score.Options{Bundle: cfg.Model})
	groups := study.Groups(s, results, study.Options{K: k, Threshold: b.Manifest.Scores.Threshold})

	// The custom step: join the flagged studies with their files.
	flagged := beam.ParDo(s, &flaggedFn{}, groups)
	files := beam.ParDo(s, &fileFn{}, results)
	beam.ParDo0(s, &routeFn{Dest: cfg.Flagged}, beam.CoGroupByKey(s, flagged, files))
	return nil
}

// flaggedFn emits the identifier of every anomalous study.
type flaggedFn struct{}

func (f *flaggedFn) ProcessElement(g study.Group, emit func(string, bool)) {
	if g.Level == study.LevelStudy && g.Anomalous {
		emit(g.Study, true)
	}
}

// fileFn keys each scored slice's file by its study.
type fileFn struct{}

func (f *fileFn) ProcessElement(r score.Result, emit func(string, string)) {
	emit(study.StudyOf(study.FromResult(r)), r.Item.URI)
}

// routeFn copies the files of a flagged study to Dest/<study>/.
type routeFn struct{ Dest string }

func (f *routeFn) ProcessElement(ctx context.Context, id string, flagged func(*bool) bool, files func(*string) bool) error {
	var v bool
	if !flagged(&v) {
		return nil
	}
	seen := map[string]bool{}
	var uri string
	for files(&uri) {
		if seen[uri] {
			continue // the slices of a volume share their file
		}
		seen[uri] = true
		data, err := storage.ReadFile(ctx, uri, maxFileBytes)
		if err != nil {
			return fmt.Errorf("route_flagged: %w", err)
		}
		dst := storage.Join(f.Dest, folderOf(id), path.Base(strings.ReplaceAll(uri, "\\", "/")))
		if err := storage.WriteFileAtomic(ctx, dst, data); err != nil {
			return fmt.Errorf("route_flagged: %w", err)
		}
		routedFiles.Inc(ctx, 1)
	}
	return nil
}

// folderOf names a study's folder: its UID (or hash), or for a study that
// is a file, the file's base name.
func folderOf(id string) string {
	if strings.ContainsAny(id, "/\\") {
		id = path.Base(strings.ReplaceAll(id, "\\", "/"))
	}
	return id
}

func main() {
	var cfg Config
	flag.StringVar(&cfg.Model, "model", "", "model bundle (directory, .tar, local or gs://)")
	flag.StringVar(&cfg.Input, "input", "", "images: glob, folder, manifest CSV (local or gs://)")
	flag.StringVar(&cfg.Flagged, "flagged", "", "folder or bucket prefix for the flagged studies' files")
	flag.StringVar(&cfg.StudyScore, "study-score", "max", "study score: max or topk:K")
	flag.Parse()
	if cfg.Model == "" || cfg.Input == "" || cfg.Flagged == "" {
		fmt.Fprintln(os.Stderr, "usage: route_flagged --model BUNDLE --input IN --flagged OUT [Beam flags]")
		os.Exit(2)
	}
	beam.Init()
	ctx := context.Background()
	p, s := beam.NewPipelineWithRoot()
	if err := Build(ctx, s, cfg); err != nil {
		log.Fatal(err)
	}
	if err := beamx.Run(ctx, p); err != nil {
		log.Fatal(err)
	}
}
