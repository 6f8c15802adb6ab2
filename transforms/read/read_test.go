package read

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/io/pixels"
)

func TestMain(m *testing.M) {
	shared.SkipExamplesIfMissing()
	ptest.Main(m)
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyShared(t *testing.T, dst string, elems ...string) {
	t.Helper()
	b, err := os.ReadFile(shared.MustPath(t, elems...))
	if err != nil {
		t.Fatal(err)
	}
	write(t, dst, b)
}

// tiles builds a small MVTec layout: 2 good, 1 crack with mask, a bad file.
func tiles(t *testing.T) string {
	dir := t.TempDir()
	src := shared.MustPath(t, "data", "industrial", "magnetic_tile")
	goods, _ := filepath.Glob(filepath.Join(src, "test", "good", "*.jpg"))
	cracks, _ := filepath.Glob(filepath.Join(src, "test", "crack", "*.jpg"))
	sort.Strings(goods)
	sort.Strings(cracks)
	for _, g := range goods[:2] {
		copyShared(t, filepath.Join(dir, "test", "good", filepath.Base(g)), strings.TrimPrefix(g, shared.MustPath(t)))
	}
	c := filepath.Base(cracks[0])
	m := strings.TrimSuffix(c, ".jpg") + "_mask.png"
	copyShared(t, filepath.Join(dir, "test", "crack", c), "data", "industrial", "magnetic_tile", "test", "crack", c)
	copyShared(t, filepath.Join(dir, "ground_truth", "crack", m), "data", "industrial", "magnetic_tile", "ground_truth", "crack", m)
	write(t, filepath.Join(dir, "test", "crack", "bad.jpg"), []byte("\xff\xd8\xff\xe0 truncated"))
	write(t, filepath.Join(dir, "train", "good", "ignored.jpg"), []byte("x"))
	write(t, filepath.Join(dir, "test", ".hidden"), []byte("x"))
	return dir
}

func TestListMVTec(t *testing.T) {
	dir := tiles(t)
	files, err := List(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("listed %d files, want 4 (train/ and hidden files skipped): %+v", len(files), files)
	}
	for _, f := range files {
		it := f.Items[0]
		cat := filepath.Base(filepath.Dir(f.URI))
		switch cat {
		case "good":
			if it.Label != 0 || it.Group != "" || it.MaskURI != EmptyMask {
				t.Errorf("good item %+v", it)
			}
		case "crack":
			want := filepath.Join(dir, "ground_truth", "crack", strings.TrimSuffix(filepath.Base(f.URI), ".jpg")+"_mask.png")
			if it.Label != 1 || it.Group != "crack" || it.MaskURI != want {
				t.Errorf("crack item %+v, want mask %s", it, want)
			}
		default:
			t.Errorf("unexpected file %s", f.URI)
		}
	}
}

func TestListManifest(t *testing.T) {
	dir := t.TempDir()
	csv := "uri,slice,label,mask_uri,mask_slice,patient,Patient_Name\n" +
		"vol/a.nii.gz,3,1,masks/a.nii.gz,,p1,Doe\n" +
		"vol/a.nii.gz,4,0,masks/a.nii.gz,7,p1,Doe\n" +
		"/abs/b.dcm,,0,,,p2,Roe\n" +
		"gs://bucket/c.png,,,,,p3,\n" +
		"vol/d.nii.gz,x,0,,,p4,\n" +
		"vol/e.nii.gz,,2,,,p5,\n"
	write(t, filepath.Join(dir, "m.csv"), []byte(csv))
	files, err := List(context.Background(), filepath.Join(dir, "m.csv"))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, f := range files {
		for _, it := range f.Items {
			got = append(got, fmt.Sprintf("%s|%d|%d|%s|%d|%s|err=%v", it.URI, it.Index, it.Label, it.MaskURI, it.MaskIndex, it.Meta["patient"], f.Error != ""))
		}
	}
	want := []string{
		filepath.Join(dir, "vol/a.nii.gz") + "|3|1|" + filepath.Join(dir, "masks/a.nii.gz") + "|3|p1|err=false",
		filepath.Join(dir, "vol/a.nii.gz") + "|4|0|" + filepath.Join(dir, "masks/a.nii.gz") + "|7|p1|err=false",
		"/abs/b.dcm|-1|0|" + EmptyMask + "|-1|p2|err=false",
		"gs://bucket/c.png|-1|-1||-1|p3|err=false",
		filepath.Join(dir, "vol/d.nii.gz") + "|-1|-1||-1|p4|err=true",
		filepath.Join(dir, "vol/e.nii.gz") + "|-1|2||-1|p5|err=true",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("manifest rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(files[0].Items) != 2 {
		t.Errorf("rows of one volume are not grouped: %+v", files[0])
	}
	if files[0].Items[0].Meta["patient_name"] != "Doe" {
		t.Errorf("extra columns not kept in Meta: %v", files[0].Items[0].Meta)
	}
}

func TestListErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "nouri.csv"), []byte("path,label\nx.png,1\n"))
	for _, in := range []string{"", filepath.Join(dir, "missing"), filepath.Join(dir, "*.png"), filepath.Join(dir, "nouri.csv")} {
		if _, err := List(context.Background(), in); err == nil {
			t.Errorf("List(%q) succeeded", in)
		}
	}
}

// TestReadImagesFLAIR expands a NIfTI volume row without a slice into every
// slice, with each slice's mask, and a row with a bad slice into a failure.
func TestReadImagesFLAIR(t *testing.T) {
	src := shared.MustPath(t, "data", "medical", "lgg_flair")
	b, err := os.ReadFile(filepath.Join(src, "test.csv"))
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Split(strings.Split(string(b), "\n")[1], ",")
	vol, mask := filepath.Join(src, first[0]), filepath.Join(src, first[3])
	dir := t.TempDir()
	write(t, filepath.Join(dir, "m.csv"), []byte("uri,slice,label,mask_uri\n"+vol+",,,"+mask+"\n"+vol+",9999,0,"+mask+"\n"))

	imgs, err := decodeFile(vol)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []Options{{}, {NoReshuffle: true, Prefetch: 2}} {
		p, s := beam.NewPipelineWithRoot()
		out := ReadImages(s, filepath.Join(dir, "m.csv"), opt)
		passert.Count(s, out.Images, "images", len(imgs))
		passert.Count(s, out.Failures, "failures", 1)
		passert.Sum(s, out.Inputs, "inputs", 1, 2)
		masked := beam.ParDo(s, checkSlice, out.Images)
		passert.Count(s, masked, "masked", len(imgs))
		ptest.RunAndValidate(t, p)
	}
}

// slowDecoder decodes "good*" files to one image each after a delay that
// varies by file, fails "bad*" files, panics on "panic*" files, and
// reports each file whose decoding starts.
type slowDecoder struct{ started chan string }

func (d slowDecoder) decode(ctx context.Context, uri string, _ pixels.Limits) ([]*pixels.Image, error) {
	if d.started != nil {
		d.started <- uri
	}
	time.Sleep(time.Duration(len(uri)%3) * time.Millisecond)
	switch {
	case strings.HasPrefix(uri, "bad"):
		return nil, fmt.Errorf("read: %s: not an image", uri)
	case strings.HasPrefix(uri, "panic"):
		panic("decoder bug")
	}
	return []*pixels.Image{pixels.New(2, 2, 1, pixels.Uint8)}, nil
}

// expandAll runs f over files as a bundle does and returns what it emits,
// in order.
func expandAll(t *testing.T, f *expandFn, files []File) []string {
	t.Helper()
	var got []string
	emit := func(d Decoded) { got = append(got, "image "+d.Item.URI) }
	fail := func(fl Failure) { got = append(got, "failure "+fl.URI+": "+fl.Error) }
	for _, file := range files {
		f.ProcessElement(context.Background(), file, emit, fail)
		if len(f.pending) > max(0, f.Prefetch) {
			t.Fatalf("prefetch %d: %d files pending", f.Prefetch, len(f.pending))
		}
	}
	f.FinishBundle(context.Background(), emit, fail)
	return got
}

// TestExpandPrefetch checks that decoding files ahead emits exactly what
// decoding each in turn does, in the same order, with at most Prefetch
// files pending; and that a decoder's panic fails only its file.
func TestExpandPrefetch(t *testing.T) {
	var files []File
	for i := range 23 {
		uri := fmt.Sprintf("good%02d.png", i)
		switch i % 7 {
		case 3:
			uri = fmt.Sprintf("bad%02d.png", i)
		case 5:
			files = append(files, File{URI: fmt.Sprintf("row%02d", i), Items: []Item{{URI: fmt.Sprintf("row%02d", i), Index: -1}}, Error: "manifest row: bad label"})
			continue
		}
		files = append(files, File{URI: uri, Items: []Item{{URI: uri, Index: -1, MaskIndex: -1}}})
	}
	want := expandAll(t, &expandFn{decodeURI: slowDecoder{}.decode}, files)
	if len(want) != len(files) {
		t.Fatalf("%d outputs for %d files", len(want), len(files))
	}
	for _, k := range []int{1, 2, 5, 40} {
		got := expandAll(t, &expandFn{Prefetch: k, decodeURI: slowDecoder{}.decode}, files)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("prefetch %d emitted\n%s\nwant\n%s", k, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	got := expandAll(t, &expandFn{Prefetch: 2, decodeURI: slowDecoder{}.decode},
		[]File{{URI: "good.png", Items: []Item{{URI: "good.png", Index: -1}}}, {URI: "panic.png", Items: []Item{{URI: "panic.png", Index: -1}}}})
	if len(got) != 2 || got[0] != "image good.png" || !strings.Contains(got[1], "failure panic.png: read: panic.png: decoder panic: decoder bug") {
		t.Errorf("with a panicking decoder: %q", got)
	}
}

// TestExpandPrefetchOverlaps checks that with Prefetch the next file is
// being decoded while the images of the one before it are emitted.
func TestExpandPrefetchOverlaps(t *testing.T) {
	d := slowDecoder{started: make(chan string, 16)}
	f := &expandFn{Prefetch: 1, decodeURI: d.decode}
	var files []File
	for i := range 6 {
		uri := fmt.Sprintf("good%d.png", i)
		files = append(files, File{URI: uri, Items: []Item{{URI: uri, Index: -1}}})
	}
	seen := map[string]bool{}
	emit := func(dd Decoded) {
		var next string
		for i, file := range files[:len(files)-1] {
			if file.URI == dd.Item.URI {
				next = files[i+1].URI
			}
		}
		for next != "" && !seen[next] {
			select {
			case u := <-d.started:
				seen[u] = true
			case <-time.After(2 * time.Second):
				t.Fatalf("%s was emitted before %s started decoding", dd.Item.URI, next)
			}
		}
	}
	fail := func(fl Failure) { t.Errorf("failure %v", fl) }
	for _, file := range files {
		f.ProcessElement(context.Background(), file, emit, fail)
	}
	f.FinishBundle(context.Background(), emit, fail)
}

func checkSlice(d Decoded) (int, error) {
	if d.Item.Index < 0 || d.Item.MaskIndex != d.Item.Index || len(d.Mask) != d.Image.Rows*d.Image.Cols || d.Item.IndexKind != "slice" {
		return 0, fmt.Errorf("bad element %+v (mask %d values)", d.Item, len(d.Mask))
	}
	return 1, nil
}

func init() { register.Function1x2[Decoded, int, error](checkSlice) }

func decodeFile(uri string) (n []int, err error) {
	f := &expandFn{}
	imgs, err := f.decode(context.Background(), uri)
	for _, im := range imgs {
		n = append(n, im.Index)
	}
	return n, err
}

// TestReadImagesBadFiles: every input of an MVTec layout with a broken file
// comes out as an image or a failure, with or without the reshuffle, and
// the input count is one element.
func TestReadImagesBadFiles(t *testing.T) {
	dir := tiles(t)
	for _, opt := range []Options{{}, {NoReshuffle: true}, {NoReshuffle: true, Prefetch: 2}, {Prefetch: 1}} {
		p, s := beam.NewPipelineWithRoot()
		out := ReadImages(s, dir, opt)
		passert.Count(s, out.Images, "images", 3)
		passert.Count(s, out.Failures, "failures", 1)
		passert.Sum(s, out.Inputs, "inputs", 1, 4)
		ptest.RunAndValidate(t, p)
	}
}

// FuzzListManifest: any manifest either lists or fails with an error; it
// never panics, and every data row is accounted for.
func FuzzListManifest(f *testing.F) {
	for _, p := range [][]string{{"medical", "lgg_dicom", "test.csv"}, {"medical", "lgg_flair", "test.csv"}} {
		if path, err := shared.Path(append([]string{"data"}, p...)...); err == nil {
			if b, err := os.ReadFile(path); err == nil {
				lines := strings.SplitN(string(b), "\n", 5)
				f.Add(strings.Join(lines[:len(lines)-1], "\n"))
			}
		}
	}
	f.Add("uri,slice,label\na.png,1.0,1\n\"b,c.png\",,0\n")
	f.Add("uri\n\"unterminated\n")
	f.Add("\ufeffURI,Label\nx.dcm,1\n")
	f.Fuzz(func(t *testing.T, csv string) {
		dir := t.TempDir()
		p := filepath.Join(dir, "m.csv")
		if err := os.WriteFile(p, []byte(csv), 0o644); err != nil {
			t.Fatal(err)
		}
		files, err := List(context.Background(), p)
		if err != nil {
			return
		}
		for _, f := range files {
			if len(f.Items) == 0 {
				t.Fatalf("file %s without items", f.URI)
			}
		}
		// ListEach emits the same rows, run by run.
		var each []File
		if err := ListEach(context.Background(), p, func(f File) error { each = append(each, f); return nil }); err != nil {
			t.Fatalf("List succeeded, ListEach failed: %v", err)
		}
		rows := func(fs []File) []string {
			var out []string
			for _, f := range fs {
				for _, it := range f.Items {
					out = append(out, fmt.Sprintf("%s|%d|%d|%s|%v", it.URI, it.Index, it.Label, it.MaskURI, f.Error != ""))
				}
			}
			sort.Strings(out)
			return out
		}
		if a, b := rows(files), rows(each); strings.Join(a, "\n") != strings.Join(b, "\n") {
			t.Fatalf("List rows %q, ListEach rows %q", a, b)
		}
	})
}

// TestListEach: the manifest is emitted row run by row run: adjacent rows of
// one file are one File, separated rows one File per run, bad rows their own
// File; List gathers each file's runs into one File, in the order of its
// first row; an error from emit stops the listing.
func TestListEach(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	csv := "uri,slice,label\n" +
		"a.nii.gz,0,0\n" +
		"a.nii.gz,1,0\n" +
		"b.png,,1\n" +
		"a.nii.gz,2,1\n" +
		"a.nii.gz,x,1\n" +
		"a.nii.gz,3,1\n"
	m := filepath.Join(dir, "m.csv")
	write(t, m, []byte(csv))
	show := func(files []File) string {
		var out []string
		for _, f := range files {
			var idx []string
			for _, it := range f.Items {
				idx = append(idx, fmt.Sprint(it.Index))
			}
			out = append(out, fmt.Sprintf("%s[%s]err=%v", filepath.Base(f.URI), strings.Join(idx, ","), f.Error != ""))
		}
		return strings.Join(out, " ")
	}
	var each []File
	if err := ListEach(ctx, m, func(f File) error { each = append(each, f); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, want := show(each), "a.nii.gz[0,1]err=false b.png[-1]err=false a.nii.gz[2]err=false a.nii.gz[-1]err=true a.nii.gz[3]err=false"; got != want {
		t.Errorf("ListEach:\n got %s\nwant %s", got, want)
	}
	all, err := List(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := show(all), "a.nii.gz[0,1,2,3]err=false b.png[-1]err=false a.nii.gz[-1]err=true"; got != want {
		t.Errorf("List:\n got %s\nwant %s", got, want)
	}
	stop := errors.New("stop")
	n := 0
	if err := ListEach(ctx, m, func(File) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("ListEach after an emit error: %v, %d calls", err, n)
	}
	write(t, filepath.Join(dir, "empty.csv"), []byte("uri,label\n"))
	if err := ListEach(ctx, filepath.Join(dir, "empty.csv"), func(File) error { return nil }); err == nil {
		t.Error("a manifest without rows listed without an error")
	}
}

// TestParseManifestReadError: a manifest whose reading fails part-way
// stops the listing with that error instead of listing failed lines.
func TestParseManifestReadError(t *testing.T) {
	boom := errors.New("connection reset")
	in := io.MultiReader(strings.NewReader("uri,label\na.png,0\nb.png,1\n\"c.p"), iotest.ErrReader(boom))
	n := 0
	err := parseManifest(in, "gs://b/m.csv", func(File) error {
		if n++; n > 100 {
			return errors.New("still listing after 100 files")
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("parseManifest after a read error: %v (%d files), want %v", err, n, boom)
	}
}

// maskDecoder decodes images and masks as slowDecoder does, counting the
// decodes of each URI and reporting each start; a mask (mask*) has its
// second pixel set.
type maskDecoder struct {
	mu      sync.Mutex
	count   map[string]int
	started chan string
}

func (d *maskDecoder) decode(ctx context.Context, uri string, l pixels.Limits) ([]*pixels.Image, error) {
	d.mu.Lock()
	d.count[uri]++
	d.mu.Unlock()
	if d.started != nil {
		d.started <- uri
	}
	imgs, err := slowDecoder{}.decode(ctx, uri, l)
	if err == nil && strings.HasPrefix(uri, "mask") {
		imgs[0].Set(1, 255)
	}
	return imgs, err
}

// TestExpandMasksAhead checks that with Prefetch a file's masks are decoded
// with it, ahead of the images before it being emitted; that the outputs,
// masks included, are those of decoding in turn; and that a mask file
// shared by files decoded at the same time is decoded once (each file's
// goroutine asks the cache for it).
func TestExpandMasksAhead(t *testing.T) {
	var files []File
	for i := range 12 {
		uri := fmt.Sprintf("good%02d.png", i)
		mask := "mask-a.png"
		switch i % 4 {
		case 1:
			mask = "mask-shared.png"
		case 2:
			mask = "badmask.png"
		case 3:
			mask = EmptyMask
		}
		files = append(files, File{URI: uri, Items: []Item{{URI: uri, Index: -1, MaskURI: mask, MaskIndex: -1}}})
	}
	run := func(prefetch int, d *maskDecoder) []string {
		var got []string
		f := &expandFn{Prefetch: prefetch, decodeURI: d.decode}
		emit := func(dd Decoded) { got = append(got, fmt.Sprintf("image %s mask %v", dd.Item.URI, dd.Mask)) }
		fail := func(fl Failure) { got = append(got, "failure "+fl.URI+": "+fl.Error) }
		for _, file := range files {
			f.ProcessElement(context.Background(), file, emit, fail)
		}
		f.FinishBundle(context.Background(), emit, fail)
		return got
	}
	want := run(0, &maskDecoder{count: map[string]int{}})
	if len(want) != len(files) || want[0] != "image good00.png mask [0 1 0 0]" || !strings.HasPrefix(want[2], "failure good02.png: read: mask: read: badmask.png") {
		t.Fatalf("in turn: %q", want)
	}
	for _, k := range []int{1, 3, 12} {
		d := &maskDecoder{count: map[string]int{}}
		if got := run(k, d); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("prefetch %d emitted\n%s\nwant\n%s", k, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		// Three mask files, which the cache holds all along.
		for _, m := range []string{"mask-a.png", "mask-shared.png", "badmask.png"} {
			if n := d.count[m]; n != 1 {
				t.Errorf("prefetch %d: %s was decoded %d times, want once", k, m, n)
			}
		}
	}

	// Ahead: when good00's image is emitted, good01's mask has been read.
	d := &maskDecoder{count: map[string]int{}, started: make(chan string, 64)}
	f := &expandFn{Prefetch: 1, decodeURI: d.decode}
	seen := map[string]bool{}
	emit := func(dd Decoded) {
		if dd.Item.URI != "good00.png" {
			return
		}
		for !seen["mask-shared.png"] {
			select {
			case u := <-d.started:
				seen[u] = true
			case <-time.After(2 * time.Second):
				t.Fatal("good00.png was emitted before good01.png's mask started decoding")
			}
		}
	}
	for _, file := range files[:3] {
		f.ProcessElement(context.Background(), file, emit, func(Failure) {})
	}
	f.FinishBundle(context.Background(), emit, func(Failure) {})
}

// TestExpanderSharesMasks checks that one Expander decodes a mask file
// shared by several Files once, with the same outputs as ExpandFile, which
// decodes it for each File.
func TestExpanderSharesMasks(t *testing.T) {
	var files []File
	for i := range 6 {
		uri := fmt.Sprintf("good%02d.png", i)
		files = append(files, File{URI: uri, Items: []Item{{URI: uri, Index: -1, MaskURI: "mask-vol.png", MaskIndex: -1}}})
	}
	var got, want []string
	emit := func(out *[]string) func(Decoded) {
		return func(d Decoded) { *out = append(*out, fmt.Sprintf("image %s mask %v", d.Item.URI, d.Mask)) }
	}
	fail := func(fl Failure) { t.Errorf("failure %s: %s", fl.URI, fl.Error) }
	shared, each := &maskDecoder{count: map[string]int{}}, &maskDecoder{count: map[string]int{}}
	x := NewExpander(Options{})
	x.f.decodeURI = shared.decode
	for _, f := range files {
		x.Expand(context.Background(), f, emit(&got), fail)
		one := NewExpander(Options{}) // what ExpandFile does
		one.f.decodeURI = each.decode
		one.Expand(context.Background(), f, emit(&want), fail)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) != len(files) {
		t.Errorf("one Expander emitted\n%s\none per file\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := shared.count["mask-vol.png"]; n != 1 {
		t.Errorf("one Expander decoded the shared mask %d times, want once", n)
	}
	if n := each.count["mask-vol.png"]; n != len(files) {
		t.Errorf("an Expander per file decoded the mask %d times, want %d", n, len(files))
	}
}
