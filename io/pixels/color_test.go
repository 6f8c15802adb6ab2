package pixels

import (
	"slices"
	"strings"
	"testing"
)

// TestYBRToRGB checks the BT.601 full-range conversion against values
// computed in float64 with Python (none within 0.05 of a rounding
// boundary), and that the metadata follows.
func TestYBRToRGB(t *testing.T) {
	ybr := []byte{128, 128, 128, 76, 85, 255, 150, 44, 21, 29, 255, 107, 0, 0, 0, 255, 255, 255, 200, 100, 170}
	want := []byte{128, 128, 128, 254, 0, 0, 0, 255, 1, 0, 0, 254, 0, 135, 0, 255, 121, 255, 255, 180, 150}
	m := New(1, len(ybr)/3, 3, Uint8)
	copy(m.Data, ybr)
	m.Meta.Photometric = "YBR_FULL"
	m.Meta.Modality = "OT"
	got, err := YBRToRGB(m)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Data, want) {
		t.Errorf("RGB %v, want %v", got.Data, want)
	}
	if got.Meta.Photometric != "RGB" || got.Meta.Modality != "OT" || m.Meta.Photometric != "YBR_FULL" {
		t.Errorf("photometric %q (input now %q), modality %q", got.Meta.Photometric, m.Meta.Photometric, got.Meta.Modality)
	}
	if _, err := YBRToRGB(New(2, 2, 1, Uint8)); err == nil || !strings.Contains(err.Error(), "needs 3 uint8 channels") {
		t.Errorf("gray image: %v", err)
	}
}
