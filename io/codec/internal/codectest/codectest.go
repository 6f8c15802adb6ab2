// Package codectest holds test helpers shared by the codec packages: a
// minimal DICOM reader that extracts the header fields and the (encapsulated
// or native) pixel data of Explicit VR Little Endian files, the loader of
// the reference decodes in shared/data/decoders/dicom/golden.json, and the
// list of the shared lgg_dicom slices by transfer syntax.
//
// It exists only for tests; the production DICOM reader is io/dicom.
package codectest

import (
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/multiad/multiad/internal/shared"
)

// File is the part of a DICOM file the codec tests need.
type File struct {
	TransferSyntax                                       string
	Rows, Cols, SamplesPerPixel, BitsAllocated, PixelRep int
	NumberOfFrames                                       int
	Encapsulated                                         bool
	Native                                               []byte   // native pixel data
	Fragments                                            [][]byte // encapsulated fragments, offset table excluded
	OffsetTable                                          []uint32 // basic offset table, may be empty
}

// Frames groups the encapsulated fragments into frames: all fragments for a
// single frame, the basic offset table when present, else one fragment each.
func (f *File) Frames() ([][]byte, error) {
	n := max(f.NumberOfFrames, 1)
	if n == 1 {
		var all []byte
		for _, fr := range f.Fragments {
			all = append(all, fr...)
		}
		return [][]byte{all}, nil
	}
	if len(f.OffsetTable) == n {
		// Offsets count item headers (8 bytes each) and fragment bytes.
		var frames [][]byte
		pos := uint32(0)
		frame := -1
		for _, fr := range f.Fragments {
			if frame+1 < n && pos == f.OffsetTable[frame+1] {
				frames = append(frames, nil)
				frame++
			}
			if frame < 0 {
				return nil, errors.New("codectest: offset table does not start at 0")
			}
			frames[frame] = append(frames[frame], fr...)
			pos += 8 + uint32(len(fr))
		}
		if len(frames) != n {
			return nil, fmt.Errorf("codectest: offset table gives %d frames, want %d", len(frames), n)
		}
		return frames, nil
	}
	if len(f.Fragments) == n {
		return f.Fragments, nil
	}
	return nil, fmt.Errorf("codectest: %d fragments for %d frames and no offset table", len(f.Fragments), n)
}

// ReadFile parses a DICOM Part 10 file whose data set is Explicit VR Little
// Endian (every encapsulated transfer syntax, and dcmtk's decompressed output).
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 132 || string(b[128:132]) != "DICM" {
		return nil, fmt.Errorf("codectest: %s: no DICM preamble", path)
	}
	f := &File{}
	p := &parser{b: b, pos: 132, f: f}
	if err := p.elements(len(b), 0); err != nil {
		return nil, fmt.Errorf("codectest: %s: %w", path, err)
	}
	return f, nil
}

type parser struct {
	b   []byte
	pos int
	f   *File
}

var longVR = map[string]bool{"OB": true, "OW": true, "OF": true, "OD": true, "OL": true, "OV": true,
	"SQ": true, "UT": true, "UN": true, "UC": true, "UR": true, "SV": true, "UV": true}

func (p *parser) u16(at int) int { return int(binary.LittleEndian.Uint16(p.b[at:])) }
func (p *parser) u32(at int) uint32 {
	return binary.LittleEndian.Uint32(p.b[at:])
}

// elements parses elements until end, or until an item delimiter at depth > 0.
func (p *parser) elements(end, depth int) error {
	for p.pos+8 <= end {
		group, elem := p.u16(p.pos), p.u16(p.pos+2)
		if group == 0xFFFE {
			if elem == 0xE00D { // item delimitation
				p.pos += 8
				return nil
			}
			return fmt.Errorf("unexpected item tag at byte %d", p.pos)
		}
		var length uint32
		if longVR[string(p.b[p.pos+4:p.pos+6])] {
			if p.pos+12 > end {
				return fmt.Errorf("truncated element at byte %d", p.pos)
			}
			length = p.u32(p.pos + 8)
			p.pos += 12
		} else {
			length = uint32(p.u16(p.pos + 6))
			p.pos += 8
		}
		tag := uint32(group)<<16 | uint32(elem)
		if length == 0xFFFFFFFF {
			if tag == 0x7FE00010 && depth == 0 {
				return p.encapsulated()
			}
			if err := p.sequence(depth); err != nil {
				return err
			}
			continue
		}
		if p.pos+int(length) > end {
			return fmt.Errorf("element (%04X,%04X) of %d bytes at byte %d overruns the file", group, elem, length, p.pos)
		}
		val := p.b[p.pos : p.pos+int(length)]
		p.pos += int(length)
		if depth > 0 {
			continue
		}
		switch tag {
		case 0x00020010:
			p.f.TransferSyntax = strings.TrimRight(string(val), "\x00 ")
		case 0x00280010:
			p.f.Rows = int(binary.LittleEndian.Uint16(val))
		case 0x00280011:
			p.f.Cols = int(binary.LittleEndian.Uint16(val))
		case 0x00280002:
			p.f.SamplesPerPixel = int(binary.LittleEndian.Uint16(val))
		case 0x00280100:
			p.f.BitsAllocated = int(binary.LittleEndian.Uint16(val))
		case 0x00280103:
			p.f.PixelRep = int(binary.LittleEndian.Uint16(val))
		case 0x00280008:
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimRight(string(val), "\x00")))
			if err != nil {
				return fmt.Errorf("bad NumberOfFrames %q", val)
			}
			p.f.NumberOfFrames = n
		case 0x7FE00010:
			p.f.Native = val
		}
	}
	return nil
}

// sequence skips an undefined-length sequence.
func (p *parser) sequence(depth int) error {
	for p.pos+8 <= len(p.b) {
		group, elem, length := p.u16(p.pos), p.u16(p.pos+2), p.u32(p.pos+4)
		p.pos += 8
		if group != 0xFFFE {
			return fmt.Errorf("expected item at byte %d", p.pos-8)
		}
		switch {
		case elem == 0xE0DD:
			return nil
		case length == 0xFFFFFFFF:
			if err := p.elements(len(p.b), depth+1); err != nil {
				return err
			}
		default:
			if p.pos+int(length) > len(p.b) {
				return fmt.Errorf("item at byte %d overruns the file", p.pos-8)
			}
			p.pos += int(length)
		}
	}
	return errors.New("unterminated sequence")
}

// encapsulated reads the items of encapsulated pixel data.
func (p *parser) encapsulated() error {
	p.f.Encapsulated = true
	first := true
	for p.pos+8 <= len(p.b) {
		group, elem, length := p.u16(p.pos), p.u16(p.pos+2), p.u32(p.pos+4)
		p.pos += 8
		if group != 0xFFFE {
			return fmt.Errorf("expected pixel data item at byte %d", p.pos-8)
		}
		if elem == 0xE0DD {
			return nil
		}
		if p.pos+int(length) > len(p.b) {
			return fmt.Errorf("pixel data item of %d bytes at byte %d overruns the file", length, p.pos-8)
		}
		val := p.b[p.pos : p.pos+int(length)]
		p.pos += int(length)
		if first {
			for i := 0; i+4 <= len(val); i += 4 {
				p.f.OffsetTable = append(p.f.OffsetTable, binary.LittleEndian.Uint32(val[i:]))
			}
			first = false
			continue
		}
		p.f.Fragments = append(p.f.Fragments, val)
	}
	return errors.New("unterminated encapsulated pixel data")
}

// Golden is one entry of shared/data/decoders/dicom/golden.json.
type Golden struct {
	Readable        *bool  `json:"readable"`
	TransferSyntax  string `json:"transfer_syntax"`
	Rows            int    `json:"Rows"`
	Columns         int    `json:"Columns"`
	SamplesPerPixel int    `json:"SamplesPerPixel"`
	BitsAllocated   int    `json:"BitsAllocated"`
	BitsStored      int    `json:"BitsStored"`
	PixelRep        int    `json:"PixelRepresentation"`
	Decodable       *bool  `json:"decodable"`
	Shape           []int  `json:"shape"`
	DType           string `json:"dtype"`
	RawSHA256       string `json:"raw_sha256"`
}

// LoadGolden reads golden.json from dir.
func LoadGolden(dir string) (map[string]Golden, error) {
	b, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		return nil, err
	}
	var g map[string]Golden
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("codectest: golden.json: %w", err)
	}
	return g, nil
}

// Decompress runs a dcmtk tool (dcmdrle, dcmdjpeg) to write an Explicit VR
// Little Endian copy of src into dir and returns the parsed copy. It reports
// ok=false when the tool is not installed.
func Decompress(tool, src, dir string) (f *File, ok bool, err error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, false, nil
	}
	dst := filepath.Join(dir, filepath.Base(src)+"."+tool+".dcm")
	if out, err := exec.Command(tool, "+te", src, dst).CombinedOutput(); err != nil {
		return nil, true, fmt.Errorf("%s %s: %v: %s", tool, src, err, out)
	}
	f, err = ReadFile(dst)
	return f, true, err
}

// pydicomScript prints, for each file named on the command line, the sha256
// of pydicom's pixel_array as little-endian bytes.
const pydicomScript = `
import hashlib, sys
import pydicom
for p in sys.argv[1:]:
    a = pydicom.dcmread(p).pixel_array
    a = a.astype(a.dtype.newbyteorder("<"))
    print(hashlib.sha256(a.tobytes()).hexdigest())
`

// PydicomSHA256 decodes files with pydicom (Debian python3-pydicom, which
// decodes RLE with numpy alone) and returns the sha256 of each pixel_array.
// It reports ok=false when no Python with pydicom and numpy is installed.
func PydicomSHA256(files []string) (sums []string, ok bool, err error) {
	var python string
	for _, cand := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(cand, "-c", "import pydicom, numpy").Run() == nil {
			python = cand
			break
		}
	}
	if python == "" {
		return nil, false, nil
	}
	out, err := exec.Command(python, append([]string{"-c", pydicomScript}, files...)...).Output()
	if err != nil {
		return nil, true, fmt.Errorf("codectest: pydicom: %v", err)
	}
	sums = strings.Fields(string(out))
	if len(sums) != len(files) {
		return nil, true, fmt.Errorf("codectest: pydicom printed %d sums for %d files", len(sums), len(files))
	}
	return sums, true, nil
}

// LGGFiles lists the shared lgg_dicom slices of one transfer syntax (the
// transfer_syntax column of its test.csv: "rle", "jpeg_lossless",
// "explicit", ...); it skips t when the shared data is missing
// (shared.MustPath).
func LGGFiles(t testing.TB, syntax string) []string {
	t.Helper()
	dir := shared.MustPath(t, "data", "medical", "lgg_dicom")
	fh, err := os.Open(filepath.Join(dir, "test.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	recs, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, h := range recs[0] {
		if h == "transfer_syntax" {
			col = i
		}
	}
	var out []string
	for _, r := range recs[1:] {
		if r[col] == syntax {
			out = append(out, filepath.Join(dir, r[0]))
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s slices in lgg_dicom", syntax)
	}
	return out
}
