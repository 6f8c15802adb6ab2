package read

import "context"

// Expander decodes listed Files outside a pipeline, exactly as ReadImages
// does inside one, and like one of ReadImages's workers it keeps the mask
// files it decoded last, so that the slices of a volume, listed as one
// File each, share one decode of their mask volume. Training and the
// benchmarks' stage loops use it so that they see, and pay for, what
// scoring does. An Expander is not safe for concurrent use.
//
// Example:
//
//	x := read.NewExpander(read.Options{})
//	for _, f := range files {
//		x.Expand(ctx, f, emit, fail)
//	}
type Expander struct{ f expandFn }

// NewExpander returns an Expander with opt's limits (opt.Prefetch does not
// apply: Expand decodes as it is called).
func NewExpander(opt Options) *Expander {
	return &Expander{f: expandFn{Limits: opt.Limits}}
}

// Expand calls emit for every image, slice or frame file's items ask for
// (with masks attached) and fail for every item that cannot be read.
func (x *Expander) Expand(ctx context.Context, file File, emit func(Decoded), fail func(Failure)) {
	x.f.ProcessElement(ctx, file, emit, fail)
}

// ExpandFile decodes one listed File: NewExpander(opt).Expand. To decode
// several Files, use one Expander, which decodes a mask volume shared by
// several of them once.
func ExpandFile(ctx context.Context, file File, opt Options, emit func(Decoded), fail func(Failure)) {
	NewExpander(opt).Expand(ctx, file, emit, fail)
}
