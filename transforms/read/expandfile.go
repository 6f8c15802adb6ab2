package read

import "context"

// ExpandFile decodes one listed File outside a pipeline, exactly as
// ReadImages does inside one: it calls emit for every image, slice or frame
// its items ask for (with masks attached) and fail for every item that
// cannot be read. Training uses it so that it sees the same images as scoring.
func ExpandFile(ctx context.Context, file File, opt Options, emit func(Decoded), fail func(Failure)) {
	f := &expandFn{Limits: opt.Limits}
	f.ProcessElement(ctx, file, emit, fail)
}
