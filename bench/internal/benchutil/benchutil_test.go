package benchutil

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		in          []float64
		med, lo, hi float64
	}{
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{5}, 5, 5, 5},
	} {
		s := Summarize(c.in)
		if s.Median != c.med || s.Min != c.lo || s.Max != c.hi {
			t.Errorf("Summarize(%v) = %+v", c.in, s)
		}
	}
	if s := Summarize(nil); !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v", s)
	}
	r := Summarize([]float64{1, 2, 4}).Rate(8)
	if r.Median != 4 || r.Min != 2 || r.Max != 8 {
		t.Errorf("Rate = %+v", r)
	}
}

func TestTableAndFigures(t *testing.T) {
	var b bytes.Buffer
	tb := Table{Header: []string{"a", "bb"}}
	tb.Add("xyz", "1")
	tb.Write(&b)
	if want := "| a   | bb |\n| --- | -- |\n| xyz | 1  |\n"; !strings.HasPrefix(b.String(), want) {
		t.Errorf("table:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	f := Figures{Name: "x"}
	f.Set("y.z", 0.123456)
	f.Set("nan", math.NaN())
	f.Write(&b)
	if b.String() != "bench.x.y.z=0.1235\nbench.x.nan=nan\n" {
		t.Errorf("figures: %q", b.String())
	}
}

func TestPeakGFLOPS(t *testing.T) {
	s, err := PeakGFLOPS(64, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !(s.Median > 0) {
		t.Errorf("peak %+v", s)
	}
}
