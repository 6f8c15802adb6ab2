package dicom

import (
	"fmt"
	"math"

	"github.com/multiad/multiad/io/pixels"
)

// Palette is the PALETTE COLOR lookup table of a DICOM image.
type Palette struct {
	// First is the first stored value mapped; values below map to entry 0
	// and values past the end to the last entry.
	First int
	// Bits is the entry size, 8 or 16.
	Bits int
	// Red, Green and Blue hold the entries (all the same length).
	Red, Green, Blue []uint16
}

// ReadPalette reads the palette colour lookup table of a DICOM file
// (normal or segmented tables, as pydicom's apply_color_lut reads them).
func ReadPalette(data []byte) (p *Palette, err error) {
	if catchPanics {
		defer func() {
			if r := recover(); r != nil {
				p, err = nil, fmt.Errorf("dicom: malformed palette (internal error: %v)", r)
			}
		}()
	}
	ds, err := parse(data, maxInflated(pixels.DefaultLimits))
	if err != nil {
		return nil, err
	}
	p = &Palette{}
	chans := []struct {
		desc, data, seg tag
		out             *[]uint16
	}{
		{tagRedDesc, tagRedData, tagRedSegData, &p.Red},
		{tagGreenDesc, tagGreenData, tagGreenSegData, &p.Green},
		{tagBlueDesc, tagBlueData, tagBlueSegData, &p.Blue},
	}
	for i, c := range chans {
		e := ds.elems[c.desc]
		if e == nil || len(e.value) != 6 {
			return nil, fmt.Errorf("dicom: palette descriptor %v missing or malformed", c.desc)
		}
		// The descriptor's first-mapped value may be US or SS: read words.
		n := int(ds.order.Uint16(e.value))
		first := int(ds.order.Uint16(e.value[2:]))
		if ds.vrOf(c.desc, e) == "SS" {
			first = int(int16(first))
		}
		bits := int(ds.order.Uint16(e.value[4:]))
		if n == 0 {
			n = 1 << 16
		}
		if bits != 8 && bits != 16 {
			return nil, fmt.Errorf("dicom: palette entries of %d bits (8 or 16)", bits)
		}
		if i == 0 {
			p.First, p.Bits = first, bits
		} else if first != p.First || bits != p.Bits {
			return nil, fmt.Errorf("dicom: palette descriptors disagree")
		}
		var lut []uint16
		if d := ds.elems[c.data]; d != nil {
			if bits == 8 && len(d.value) == n {
				lut = make([]uint16, n)
				for k, b := range d.value {
					lut[k] = uint16(b)
				}
			} else {
				lut = words(ds, d.value)
			}
		} else if d := ds.elems[c.seg]; d != nil {
			lut, err = expandSegmented(words(ds, d.value), n)
			if err != nil {
				return nil, err
			}
		} else {
			return nil, fmt.Errorf("dicom: palette data %v missing", c.data)
		}
		if len(lut) < n {
			return nil, fmt.Errorf("dicom: palette %v has %d entries, descriptor says %d", c.data, len(lut), n)
		}
		*c.out = lut[:n]
	}
	if len(p.Red) != len(p.Green) || len(p.Red) != len(p.Blue) {
		return nil, fmt.Errorf("dicom: palette tables differ in length")
	}
	return p, nil
}

// words reads 16-bit words in the dataset's byte order.
func words(ds *dataset, b []byte) []uint16 {
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = ds.order.Uint16(b[2*i:])
	}
	return out
}

// expandSegmented expands a segmented palette table (PS3.3 C.7.9.2):
// discrete and linear segments; indirect segments are refused.
func expandSegmented(seg []uint16, max int) ([]uint16, error) {
	var lut []uint16
	for i := 0; i+1 < len(seg) && len(lut) < max; {
		op, n := seg[i], int(seg[i+1])
		i += 2
		switch op {
		case 0:
			if i+n > len(seg) {
				return nil, fmt.Errorf("dicom: segmented palette discrete segment overruns the data")
			}
			lut = append(lut, seg[i:i+n]...)
			i += n
		case 1:
			if len(lut) == 0 || i >= len(seg) {
				return nil, fmt.Errorf("dicom: segmented palette linear segment without a start value")
			}
			y0, y1 := float64(lut[len(lut)-1]), float64(seg[i])
			i++
			step := (y1 - y0) / float64(n)
			for k := 0; k < n; k++ {
				// numpy.linspace(y0+step, y1, n), rounded half to even.
				v := y1
				if n > 1 {
					v = (y0 + step) + float64(k)*(y1-(y0+step))/float64(n-1)
				}
				lut = append(lut, uint16(math.RoundToEven(v)))
			}
		default:
			return nil, fmt.Errorf("dicom: segmented palette opcode %d not supported", op)
		}
	}
	return lut, nil
}

// Apply maps the stored indices of a PALETTE COLOR image to an RGB image
// (uint8 for 8-bit tables, uint16 for 16-bit), as pydicom's apply_color_lut.
func (p *Palette) Apply(m *pixels.Image) (*pixels.Image, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Channels != 1 {
		return nil, fmt.Errorf("dicom: palette applies to one channel, image has %d", m.Channels)
	}
	if len(p.Red) == 0 {
		return nil, fmt.Errorf("dicom: empty palette")
	}
	dt := pixels.Uint16
	if p.Bits == 8 {
		dt = pixels.Uint8
	}
	out := pixels.New(m.Rows, m.Cols, 3, dt)
	out.Index, out.IndexKind, out.Meta = m.Index, m.IndexKind, m.Meta
	out.Meta.Photometric = "RGB"
	last := len(p.Red) - 1
	for i := 0; i < m.Len(); i++ {
		k := int(m.At(i)) - p.First
		k = max(0, min(k, last))
		out.Set(3*i, float64(p.Red[k]))
		out.Set(3*i+1, float64(p.Green[k]))
		out.Set(3*i+2, float64(p.Blue[k]))
	}
	return out, nil
}
