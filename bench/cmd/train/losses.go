package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// stepLosses are the losses train.Train reports after one step.
type stepLosses struct {
	Step          int
	KD, Adv, Disc float64
}

// writeLosses writes one tab-separated line per step: step, KD, adversarial
// and discriminator loss, with every digit a float64 keeps.
func writeLosses(path string, ls []stepLosses) error {
	var b strings.Builder
	b.WriteString("step\tkd\tadv\tdisc\n")
	for _, l := range ls {
		fmt.Fprintf(&b, "%d\t%s\t%s\t%s\n", l.Step, fmtFloat(l.KD), fmtFloat(l.Adv), fmtFloat(l.Disc))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// readLosses reads a file written by writeLosses.
func readLosses(path string) ([]stepLosses, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ls []stepLosses
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			continue // header
		}
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 4 {
			return nil, fmt.Errorf("%s:%d: %d fields, want 4", path, line, len(fields))
		}
		var l stepLosses
		if l.Step, err = strconv.Atoi(fields[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: step: %w", path, line, err)
		}
		for i, p := range []*float64{&l.KD, &l.Adv, &l.Disc} {
			if *p, err = strconv.ParseFloat(fields[i+1], 64); err != nil {
				return nil, fmt.Errorf("%s:%d: column %d: %w", path, line, i+2, err)
			}
		}
		ls = append(ls, l)
	}
	return ls, sc.Err()
}

// compareLosses compares got with the losses in path, step by step, and
// returns the largest absolute difference. It fails when the steps differ
// or a difference exceeds tol.
func compareLosses(path string, got []stepLosses, tol float64) (float64, error) {
	want, err := readLosses(path)
	if err != nil {
		return 0, err
	}
	if len(want) != len(got) {
		return 0, fmt.Errorf("losses: %d steps, %s has %d", len(got), path, len(want))
	}
	var worst float64
	for i, g := range got {
		w := want[i]
		if g.Step != w.Step {
			return 0, fmt.Errorf("losses: line %d is step %d, %s has step %d", i+1, g.Step, path, w.Step)
		}
		for _, c := range []struct {
			name      string
			got, want float64
		}{{"KD", g.KD, w.KD}, {"adversarial", g.Adv, w.Adv}, {"discriminator", g.Disc, w.Disc}} {
			diff := math.Abs(c.got - c.want)
			if math.IsNaN(diff) || diff > tol {
				return diff, fmt.Errorf("losses: step %d %s loss %.9g, %s has %.9g (difference %.3g > %g)", g.Step, c.name, c.got, path, c.want, diff, tol)
			}
			worst = max(worst, diff)
		}
	}
	return worst, nil
}
