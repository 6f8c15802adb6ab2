package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/internal/testenv"
)

type goldenStats struct {
	Min, Max, Mean float64
}

type goldenEntry struct {
	Shape       []int
	Modality    string      `json:"modality"`
	Syntax      string      `json:"transfer_syntax"`
	Raw         goldenStats `json:"raw"`
	ModalityLUT goldenStats `json:"modality_lut"`
}

func TestInspectJSON(t *testing.T) {
	bin := multiadBinary(t)
	ddir := shared.MustPath(t, "data", "decoders", "dicom")
	var golden map[string]goldenEntry
	raw, err := os.ReadFile(filepath.Join(ddir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	files := []string{"CT_small.dcm", "MR_small_RLE.dcm", "ExplVR_BigEnd.dcm"}
	var args []string
	for _, f := range files {
		args = append(args, filepath.Join(ddir, f))
	}
	nii := shared.MustPath(t, "data", "decoders", "nifti", "example4d.nii.gz")
	bad := filepath.Join(t.TempDir(), "truncated.dcm")
	full, _ := os.ReadFile(filepath.Join(ddir, "CT_small.dcm"))
	if err := os.WriteFile(bad, full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	args = append(args, bad, nii, filepath.Join(ddir, "does-not-exist.dcm"))

	cmd := exec.Command(bin, append([]string{"inspect", "--json"}, args...)...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want exit status 1 (two bad inputs)", err)
	}
	type line struct {
		URI                                    string
		Frame, Slice                           *int
		Rows, Cols, Channels                   int
		DType                                  string
		Min, Max, Mean                         *float64
		RescaledMin, RescaledMax, RescaledMean *float64
		Modality                               string
		TransferSyntax                         string `json:"transfer_syntax"`
		Error                                  string
	}
	byURI := map[string][]line{}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l line
		// Field names are snake_case in the output.
		raw := strings.NewReplacer(`"rescaled_min"`, `"RescaledMin"`, `"rescaled_max"`, `"RescaledMax"`, `"rescaled_mean"`, `"RescaledMean"`).Replace(sc.Text())
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		byURI[l.URI] = append(byURI[l.URI], l)
	}
	for _, f := range files {
		g := golden[f]
		ls := byURI[filepath.Join(ddir, f)]
		if len(ls) != 1 {
			t.Fatalf("%s: %d lines", f, len(ls))
		}
		l := ls[0]
		if l.Error != "" || l.Rows != g.Shape[0] || l.Cols != g.Shape[1] || l.Modality != g.Modality || l.TransferSyntax != g.Syntax {
			t.Errorf("%s: %+v vs golden %+v", f, l, g)
		}
		check := func(name string, got *float64, want float64) {
			if got == nil || math.Abs(*got-want) > 1e-6*math.Max(1, math.Abs(want)) {
				t.Errorf("%s: %s = %v, golden %v", f, name, got, want)
			}
		}
		check("min", l.Min, g.Raw.Min)
		check("max", l.Max, g.Raw.Max)
		check("mean", l.Mean, g.Raw.Mean)
		if g.ModalityLUT.Max != 0 || g.ModalityLUT.Min != 0 {
			check("rescaled_min", l.RescaledMin, g.ModalityLUT.Min)
			check("rescaled_max", l.RescaledMax, g.ModalityLUT.Max)
			check("rescaled_mean", l.RescaledMean, g.ModalityLUT.Mean)
		}
	}
	// example4d is 128×96×24×2: one line per slice, 48 in all.
	if ls := byURI[nii]; len(ls) != 48 || ls[47].Slice == nil || *ls[47].Slice != 47 {
		t.Errorf("nifti: %d lines", len(ls))
	}
	for _, u := range []string{bad, filepath.Join(ddir, "does-not-exist.dcm")} {
		if ls := byURI[u]; len(ls) != 1 || ls[0].Error == "" {
			t.Errorf("%s: want one error line, got %+v", u, ls)
		}
	}
}

func TestInspectPHI(t *testing.T) {
	bin := multiadBinary(t)
	f := shared.MustPath(t, "data", "medical", "lgg_dicom", "series", "TCGA_FG_6691_20020405", "IM0000.dcm")
	// The patient's name as stored in the header, read independently with pydicom.
	py := exec.Command(testenv.Python(t, "pydicom"), "-c", "import pydicom,sys; d=pydicom.dcmread(sys.argv[1]); print(str(d.PatientName)); print(d.PatientBirthDate)", f)
	out, err := py.Output()
	if err != nil {
		t.Fatalf("pydicom: %v", err)
	}
	fields := strings.Fields(strings.ReplaceAll(string(out), "^", " "))
	if len(fields) < 2 {
		t.Fatalf("pydicom printed %q", out)
	}
	birth := fields[len(fields)-1]
	// Text and JSON lines; --show-phi is the hidden old name of
	// --include-phi.
	for _, format := range [][]string{{"--json"}, nil} {
		plain, err := exec.Command(bin, append(append([]string{"inspect"}, format...), f)...).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range fields {
			// Parts of the name that are also in the file's path (here the
			// study date) are the user's own URI, not a leak.
			if len(s) > 2 && !strings.Contains(f, s) && bytes.Contains(plain, []byte(s)) {
				t.Errorf("inspect %v leaks %q without --include-phi: %s", format, s, plain)
			}
		}
		for _, opt := range []string{"--include-phi", "--show-phi"} {
			withPHI, err := exec.Command(bin, append(append([]string{"inspect", opt}, format...), f)...).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(withPHI, []byte(birth)) {
				t.Errorf("inspect %s %v does not show the birth date %s: %s", opt, format, birth, withPHI)
			}
		}
	}
	help, err := exec.Command(bin, "inspect", "-h").Output()
	if err != nil || !bytes.Contains(help, []byte("-include-phi")) || bytes.Contains(help, []byte("-show-phi")) {
		t.Errorf("inspect -h (%v) should list --include-phi and not its old name --show-phi:\n%s", err, help)
	}
}
