// Command decode measures DICOM and NIfTI decode throughput (MB/s of
// decoded pixel data and images/s) of multiad's decoders against the
// Debian references on the same files, all read into memory first:
// io/dicom.Decode vs pydicom (+ its available pixel handlers) for
// uncompressed, RLE and JPEG lossless lgg_dicom files, dcmtk's dcmdjpeg
// (a process per file, start-up measured and subtracted) for JPEG
// lossless, and io/nifti.Decode vs nibabel for the lgg_flair .nii.gz
// volumes.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/multiad/multiad/bench/internal/benchutil"
	"github.com/multiad/multiad/io/dicom"
	"github.com/multiad/multiad/io/nifti"
	"github.com/multiad/multiad/io/pixels"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "decode:", err)
		os.Exit(1)
	}
}

type group struct {
	Kind  string   `json:"kind"`
	Files []string `json:"files"`
	// Reps is how many times one timed run decodes the group, so that a
	// run lasts long enough to time on a noisy machine.
	Reps int `json:"reps"`
}

type refResult struct {
	Secs  []float64 `json:"secs"`
	Bytes int64     `json:"bytes"`
	Error string    `json:"error"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	shared := fs.String("shared", "", "shared data folder (default $MULTIAD_SHARED or ../shared)")
	runs := fs.Int("runs", 5, "timed runs")
	maxFiles := fs.Int("max", 0, "files per group (0: all)")
	noRef := fs.Bool("no-ref", false, "skip the Python and dcmtk references")
	minSecs := fs.Float64("min-secs", 0.3, "repeat each group within a timed run until multiad's decoding lasts this long")
	only := fs.String("groups", "", "comma-separated groups to run (default all: dicom_explicit,dicom_rle,dicom_jpeg_lossless,nifti_gz)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *shared == "" {
		var err error
		if *shared, err = benchutil.Shared(); err != nil {
			return err
		}
	}
	groups, order, err := groupsOf(*shared, *maxFiles)
	if err != nil {
		return err
	}
	if *only != "" {
		keep := strings.Split(*only, ",")
		for _, k := range keep {
			if _, ok := groups[k]; !ok {
				return fmt.Errorf("decode: unknown group %q (want %s)", k, strings.Join(order, ","))
			}
		}
		order = keep
		kept := map[string]group{}
		for _, k := range keep {
			kept[k] = groups[k]
		}
		groups = kept
	}
	fig := &benchutil.Figures{Name: "decode"}
	type row struct {
		name            string
		n               int
		inBytes         int64
		ours, ref, dcmd benchutil.Stats // seconds
		outBytes        int64
		refErr          string
		hasRef, hasDcmd bool
		dcmdStartup     float64
	}
	var rows []row

	// Calibrate: one timed run decodes its group Reps times, at least
	// -min-secs of multiad decoding.
	blobsOf := map[string][][]byte{}
	for _, name := range order {
		g := groups[name]
		var blobs [][]byte
		for _, f := range g.Files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			blobs = append(blobs, b)
		}
		blobsOf[name] = blobs
		dec := decoderOf(g.Kind)
		secs, err := benchutil.Time(1, 1, func() error {
			for i, b := range blobs {
				if _, err := dec(b, pixels.DefaultLimits); err != nil {
					return fmt.Errorf("%s: %w", g.Files[i], err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		g.Reps = max(1, min(500, int(math.Ceil(*minSecs/max(secs[0], 1e-6)))))
		groups[name] = g
	}

	var refs map[string]refResult
	if !*noRef && benchutil.HavePython("pydicom", "nibabel", "numpy") {
		script, err := benchutil.Script("decode_ref.py")
		if err != nil {
			return err
		}
		spec, err := os.CreateTemp("", "bench-decode-*.json")
		if err != nil {
			return err
		}
		defer os.Remove(spec.Name())
		if err := json.NewEncoder(spec).Encode(groups); err != nil {
			spec.Close()
			return fmt.Errorf("write %s: %w", spec.Name(), err)
		}
		if err := spec.Close(); err != nil {
			return fmt.Errorf("write %s: %w", spec.Name(), err)
		}
		benchutil.Progress("decode", "references: pydicom and nibabel, %d runs", *runs)
		raw := map[string]json.RawMessage{}
		if err := benchutil.RunPython(ctx, &raw, script, spec.Name(), fmt.Sprint(*runs)); err != nil {
			return err
		}
		refs = map[string]refResult{}
		for k, v := range raw {
			var r refResult
			if json.Unmarshal(v, &r) == nil {
				refs[k] = r
			}
		}
	} else if !*noRef {
		benchutil.Progress("decode", "no Debian pydicom/nibabel: references skipped")
	}

	for _, name := range order {
		g := groups[name]
		blobs := blobsOf[name]
		var in int64
		for _, b := range blobs {
			in += int64(len(b))
		}
		dec := decoderOf(g.Kind)
		var out int64
		nimg := 0
		benchutil.Progress("decode", "%s: %d files × %d runs with multiad", name, len(blobs), *runs)
		secs, err := benchutil.Time(1, *runs, func() error {
			for rep := 0; rep < g.Reps; rep++ {
				out, nimg = 0, 0
				for i, b := range blobs {
					imgs, err := dec(b, pixels.DefaultLimits)
					if err != nil {
						return fmt.Errorf("%s: %w", g.Files[i], err)
					}
					for _, im := range imgs {
						out += int64(len(im.Data))
					}
					nimg += len(imgs)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		r := row{name: name, n: nimg, inBytes: in, outBytes: out, ours: benchutil.Summarize(secs).Scale(1 / float64(g.Reps))}
		if ref, ok := refs[name]; ok {
			r.refErr = ref.Error
			if ref.Error == "" && len(ref.Secs) > 0 {
				r.hasRef, r.ref = true, benchutil.Summarize(ref.Secs).Scale(1/float64(g.Reps))
				if ref.Bytes != out {
					return fmt.Errorf("%s: reference decoded %d bytes, multiad %d", name, ref.Bytes, out)
				}
			}
		}
		if name == "dicom_jpeg_lossless" && !*noRef {
			if _, err := exec.LookPath("dcmdjpeg"); err == nil {
				benchutil.Progress("decode", "%s: dcmdjpeg, a process per file, %d runs", name, *runs)
				tmp, err := os.MkdirTemp("", "bench-dcmdjpeg-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dsecs, err := benchutil.Time(1, *runs, func() error {
					for _, f := range g.Files {
						if out, err := exec.Command("dcmdjpeg", f, filepath.Join(tmp, "out.dcm")).CombinedOutput(); err != nil {
							return fmt.Errorf("dcmdjpeg %s: %v: %s", f, err, out)
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
				ssecs, err := benchutil.Time(1, *runs, func() error {
					for range g.Files {
						if err := exec.Command("dcmdjpeg", "--version").Run(); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
				r.hasDcmd, r.dcmd = true, benchutil.Summarize(dsecs)
				r.dcmdStartup = benchutil.Summarize(ssecs).Median
			}
		}
		rows = append(rows, r)
	}

	fmt.Fprintf(stdout, "### Decoding (%d runs each, files in memory, each run decoding its group repeatedly for about %.1f s of multiad time; MB/s of decoded pixel data)\n\n", *runs, *minSecs)
	t := benchutil.Table{Header: []string{"files", "images", "MB in → out", "multiad MB/s", "multiad images/s", "reference", "reference MB/s", "multiad ÷ reference"}}
	for _, r := range rows {
		mb := float64(r.outBytes) / 1e6
		ours := r.ours.Rate(mb)
		refName := "pydicom " + "2.3.1"
		if r.name == "nifti_gz" {
			refName = "nibabel 5.0.0"
		}
		refCell, ratioCell := "no baseline: "+r.refErr, "—"
		if strings.Contains(r.refErr, "missing required dependencies") {
			refCell = "no baseline: no JPEG lossless handler (GDCM, pylibjpeg absent)"
		}
		if r.hasRef {
			ref := r.ref.Rate(mb)
			refCell = ref.Format("%.1f")
			ratioCell = fmt.Sprintf("%.2f×", r.ref.Median/r.ours.Median)
			fig.Set(r.name+".ratio_vs_"+map[bool]string{true: "nibabel", false: "pydicom"}[r.name == "nifti_gz"], r.ref.Median/r.ours.Median)
		} else if r.refErr == "" {
			refCell = "not run"
		}
		t.Add(r.name, fmt.Sprint(r.n), fmt.Sprintf("%.1f → %.1f", float64(r.inBytes)/1e6, mb), ours.Format("%.1f"),
			r.ours.Rate(float64(r.n)).Format("%.0f"), refName, refCell, ratioCell)
		if r.hasDcmd {
			net := r.dcmd.Median - r.dcmdStartup
			t.Add("", "", "", "", "", "dcmdjpeg (process per file)", fmt.Sprintf("%.1f", mb/r.dcmd.Median), fmt.Sprintf("%.1f×", r.dcmd.Median/r.ours.Median))
			t.Add("", "", "", "", "", "dcmdjpeg less start-up", fmt.Sprintf("%.1f", mb/max(net, 1e-9)), fmt.Sprintf("%.1f×", net/r.ours.Median))
			fig.Set(r.name+".ratio_vs_dcmdjpeg", r.dcmd.Median/r.ours.Median)
			fig.Set(r.name+".ratio_vs_dcmdjpeg_less_startup", net/r.ours.Median)
			fig.Set(r.name+".dcmdjpeg_startup_ms", 1e3*r.dcmdStartup/float64(r.n))
		}
		fig.Set(r.name+".mb_per_s", ours.Median)
		fig.Set(r.name+".images_per_s", float64(r.n)/r.ours.Median)
	}
	t.Write(stdout)
	fmt.Fprintln(stdout, "multiad ÷ reference > 1 means multiad is that many times faster. dcmdjpeg's start-up is the time of `dcmdjpeg --version` per file; "+
		"the row less start-up subtracts it (dcmdjpeg also writes the decompressed file, which the in-memory decoders do not).")
	fmt.Fprintln(stdout)
	var lead, trail []string
	for _, r := range rows {
		if !r.hasRef {
			continue
		}
		if x := r.ref.Median / r.ours.Median; x >= 1 {
			lead = append(lead, fmt.Sprintf("%s (%.1f×)", r.name, x))
		} else {
			trail = append(trail, fmt.Sprintf("%s (%.2f×)", r.name, x))
		}
	}
	fmt.Fprintf(stdout, "Reading: multiad leads on %s and trails on %s. ", strings.Join(lead, ", "), strings.Join(append(trail, "nothing else"), ", "))
	fmt.Fprintln(stdout, "pydicom parses every element into Python objects and decodes RLE segment by segment in Python/NumPy; "+
		"multiad's parser indexes the file in place and decodes RLE in one pass. pydicom 2.3.1 as Debian ships it has no JPEG lossless "+
		"decoder (GDCM's Python binding and pylibjpeg are not packaged), so dcmtk's dcmdjpeg is the JPEG lossless baseline; as a process per file "+
		"it also pays start-up, parsing and writing the output file. On .nii.gz nibabel inflates with zlib (C) and returns the "+
		"volume in file (Fortran) order as a view; multiad inflates the whole stream in one call with libdeflate (C, through cgo; "+
		"klauspost/compress, streaming, in builds without cgo) and transposes every slice to row-major order in 32×32 tiles.")
	fmt.Fprintln(stdout)
	fig.Write(stdout)
	fmt.Fprintln(stdout)
	return nil
}

// groupsOf lists the lgg_dicom files by transfer syntax and the lgg_flair
// volumes.
func groupsOf(shared string, max int) (map[string]group, []string, error) {
	dir := filepath.Join(shared, "data", "medical", "lgg_dicom")
	f, err := os.Open(filepath.Join(dir, "test.csv"))
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, nil, err
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	groups := map[string]group{}
	names := map[string]string{"explicit": "dicom_explicit", "rle": "dicom_rle", "jpeg_lossless": "dicom_jpeg_lossless"}
	for _, r := range recs[1:] {
		name := names[r[col["transfer_syntax"]]]
		if name == "" {
			continue
		}
		g := groups[name]
		g.Kind = "dicom"
		if max <= 0 || len(g.Files) < max {
			g.Files = append(g.Files, filepath.Join(dir, r[col["uri"]]))
		}
		groups[name] = g
	}
	vols, err := filepath.Glob(filepath.Join(shared, "data", "medical", "lgg_flair", "volumes", "*.nii.gz"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(vols)
	if max > 0 && len(vols) > max {
		vols = vols[:max]
	}
	groups["nifti_gz"] = group{Kind: "nifti", Files: vols}
	order := []string{"dicom_explicit", "dicom_rle", "dicom_jpeg_lossless", "nifti_gz"}
	for _, o := range order {
		if len(groups[o].Files) == 0 {
			return nil, nil, fmt.Errorf("decode: no files for %s under %s", o, shared)
		}
	}
	return groups, order, nil
}

// decoderOf returns multiad's decoder for a group kind.
func decoderOf(kind string) func([]byte, pixels.Limits) ([]*pixels.Image, error) {
	if kind == "nifti" {
		return nifti.Decode
	}
	return dicom.Decode
}
