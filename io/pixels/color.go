package pixels

import (
	"fmt"
	"math"
)

// YBRToRGB converts an 8-bit YBR_FULL image (as io/dicom.Decode returns
// native and JPEG YBR data) to RGB with the ITU-R BT.601 full-range matrix,
// in float32 with round-half-up, as pydicom's convert_color_space does.
func YBRToRGB(m *Image) (*Image, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.Channels != 3 || m.DType != Uint8 {
		return nil, fmt.Errorf("pixels: YBR to RGB needs 3 uint8 channels, image has %d %v", m.Channels, m.DType)
	}
	out := New(m.Rows, m.Cols, 3, Uint8)
	out.Index, out.IndexKind, out.Meta = m.Index, m.IndexKind, m.Meta
	out.Meta.Photometric = "RGB"
	var (
		bg = float32(-0.114 * 1.772 / 0.587)
		rg = float32(-0.299 * 1.402 / 0.587)
		rr = float32(1.402)
		bb = float32(1.772)
	)
	clamp := func(v float32) byte {
		v = float32(math.Floor(float64(v + 0.5)))
		return byte(max(0, min(255, v)))
	}
	for i := 0; i < len(m.Data); i += 3 {
		y, cb, cr := float32(m.Data[i]), float32(m.Data[i+1])-128, float32(m.Data[i+2])-128
		out.Data[i] = clamp(y + cr*rr)
		out.Data[i+1] = clamp(y + cb*bg + cr*rg)
		out.Data[i+2] = clamp(y + cb*bb)
	}
	return out, nil
}
