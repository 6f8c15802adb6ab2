package pixels

import (
	"math"
	"strings"
	"testing"
)

func TestAtSetRoundTrip(t *testing.T) {
	cases := []struct {
		dt DType
		vs []float64
	}{
		{Uint8, []float64{0, 1, 255}},
		{Int8, []float64{-128, -1, 127}},
		{Uint16, []float64{0, 4095, 65535}},
		{Int16, []float64{-32768, -1024, 32767}},
		{Uint32, []float64{0, 1 << 31, math.MaxUint32}},
		{Int32, []float64{math.MinInt32, -5, math.MaxInt32}},
		{Float32, []float64{-1.5, 0.25, 1 << 100}},
		{Float64, []float64{math.Inf(-1), 1e-300, math.NaN()}},
	}
	for _, c := range cases {
		m := New(1, len(c.vs), 1, c.dt)
		for i, v := range c.vs {
			m.Set(i, v)
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		for i, v := range c.vs {
			got := m.At(i)
			if got != v && !(math.IsNaN(got) && math.IsNaN(v)) {
				t.Errorf("%v[%d] = %v, want %v", c.dt, i, got, v)
			}
		}
	}
}

func TestRescaledAndStats(t *testing.T) {
	m := New(1, 3, 1, Int16)
	for i, v := range []float64{-1, 0, 2} {
		m.Set(i, v)
	}
	m.Slope, m.Intercept = 2, -1024
	s := StatsOf(m.Rescaled())
	if s.Min != -1026 || s.Max != -1020 || s.Mean != -3070.0/3 || s.Count != 3 {
		t.Errorf("stats %+v", s)
	}
	if n := StatsOf([]float64{math.NaN(), 1}); n.Count != 1 || n.Mean != 1 {
		t.Errorf("NaN not skipped: %+v", n)
	}
}

func TestLimits(t *testing.T) {
	l := Limits{MaxPixels: 1000, MaxVoxels: 5000}
	cases := []struct {
		r, c, ch, f int64
		want        string
	}{
		{10, 10, 3, 1, ""},
		{10, 10, 10, 5, ""},
		{10, 10, 10, 6, "exceed the limit of 5000"},
		{100, 100, 1, 1, "exceeds the limit of 1000"},
		{1 << 40, 1 << 40, 1, 1, "exceeds"},
		{0, 10, 1, 1, "invalid"},
		{10, 10, 1, -1, "invalid"},
	}
	for _, c := range cases {
		err := l.Check(c.r, c.c, c.ch, c.f)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%d,%d,%d,%d) = %v, want %q", c.r, c.c, c.ch, c.f, err, c.want)
		}
	}
	bad := &Image{Rows: 2, Cols: 2, Channels: 1, DType: Uint16, Data: make([]byte, 7)}
	if bad.Validate() == nil {
		t.Error("Validate accepted a short buffer")
	}
}
