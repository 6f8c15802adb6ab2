package jpegll

// scanComp is one component of a scan.
type scanComp struct {
	index int // index in the frame
	table *huffTable
}

// scan parses an SOS segment (payload seg, whose length field is at pos, data
// following at dataPos), decodes its entropy-coded data, and returns the
// position after it.
func (d *decoder) scan(seg []byte, pos, dataPos int) (int, error) {
	if !d.sawFrame {
		return 0, d.errorf(pos-2, "SOS before the SOF3 frame header")
	}
	if len(seg) < 1 {
		return 0, d.errorf(pos, "empty SOS segment")
	}
	ns := int(seg[0])
	if ns < 1 || ns > len(d.comps) {
		return 0, d.errorf(pos, "scan has %d components, frame has %d", ns, len(d.comps))
	}
	if len(seg) != 4+2*ns {
		return 0, d.errorf(pos, "SOS segment of %d bytes for %d components, want %d", len(seg), ns, 4+2*ns)
	}
	comps := make([]scanComp, ns)
	for i := range comps {
		id, td := seg[1+2*i], seg[2+2*i]>>4
		idx := -1
		for j, c := range d.comps {
			if c.id == id {
				idx = j
			}
		}
		if idx < 0 {
			return 0, d.errorf(pos, "scan component id %d is not in the frame", id)
		}
		if d.comps[idx].done {
			return 0, d.errorf(pos, "component id %d coded by two scans", id)
		}
		for _, c := range comps[:i] {
			if c.index == idx {
				return 0, d.errorf(pos, "component id %d twice in one scan", id)
			}
		}
		if td > 3 || d.huff[td] == nil {
			return 0, d.errorf(pos, "scan component id %d uses undefined Huffman table %d", id, td)
		}
		comps[i] = scanComp{index: idx, table: d.huff[td]}
	}
	sv := int(seg[1+2*ns])
	pt := int(seg[3+2*ns] & 15)
	if sv < 1 || sv > 7 {
		return 0, d.errorf(pos, "invalid predictor selection value %d (1 to 7)", sv)
	}
	f := d.frame
	if pt >= f.Precision {
		return 0, d.errorf(pos, "point transform %d not below precision %d", pt, f.Precision)
	}
	if d.restart > 0 && d.restart%f.Width != 0 {
		return 0, d.errorf(pos, "restart interval %d is not a multiple of the %d MCUs of a row", d.restart, f.Width)
	}
	for _, c := range comps {
		d.comps[c.index].done = true
		d.comps[c.index].pt = pt
	}
	end, err := d.decodeScan(comps, sv, pt, dataPos)
	if err != nil {
		return 0, err
	}
	return end, nil
}

// decodeScan decodes the entropy-coded data starting at pos, and returns the
// position just after it (where the next marker begins).
func (d *decoder) decodeScan(comps []scanComp, sv, pt, pos int) (int, error) {
	f := d.frame
	w, h, nc := f.Width, f.Height, f.Components
	stride := w * nc
	init := int32(1) << (f.Precision - pt - 1)
	rowsPerInterval := h
	if d.restart > 0 {
		rowsPerInterval = d.restart / w
	}
	r := &bitReader{data: d.data, pos: pos}
	tables := make([]*huffTable, len(comps))
	for i, c := range comps {
		tables[i] = c.table
	}
	// One row of differences, in scan order (MCU by MCU).
	diffs := make([]int32, w*len(comps))
	nextRST := 0
	samples := f.Samples
	for y := 0; y < h; y++ {
		first := y%rowsPerInterval == 0 // first line of the scan or of a restart interval
		if first && y > 0 {
			if err := d.restartMarker(r, nextRST); err != nil {
				return 0, err
			}
			nextRST = (nextRST + 1) & 7
		}
		if i, ok := r.diffs(tables, diffs); !ok {
			return 0, d.errorf(r.pos, "invalid Huffman code in scan (row %d, column %d, scan component %d)", y, i/len(comps), i%len(comps))
		}
		if r.truncated() {
			return 0, d.errorf(r.pos, "truncated scan (row %d of %d)", y, h)
		}
		row := samples[y*stride : (y+1)*stride]
		for i, c := range comps {
			if first {
				undiffFirst(row[c.index:], diffs[i:], init, nc, len(comps))
			} else {
				undiff(row[c.index:], samples[(y-1)*stride+c.index:y*stride], diffs[i:], sv, nc, len(comps))
			}
		}
	}
	// The scan ends at the next marker; bits left in the reader are padding.
	return r.pos, nil
}

// undiffFirst reconstructs one component of a first line (of the scan or of
// a restart interval): the first sample is predicted by init, the others by
// the sample to the left. row holds the component every nc samples, diffs
// every ns values. Arithmetic is modulo 2^16 (T.81 H.1.2.1).
func undiffFirst(row []uint16, diffs []int32, init int32, nc, ns int) {
	row[0] = uint16(init + diffs[0])
	for x, j := nc, ns; x < len(row); x, j = x+nc, j+ns {
		row[x] = uint16(int32(row[x-nc]) + diffs[j])
	}
}

// undiff reconstructs one component of a row below another (prev): the
// first sample is predicted by the sample above, the others by predictor sv.
// Layout as in undiffFirst.
func undiff(row, prev []uint16, diffs []int32, sv, nc, ns int) {
	row[0] = uint16(int32(prev[0]) + diffs[0])
	if nc == 1 && sv == 1 {
		// The common DICOM case (SV1, one component) as a tight loop.
		diffs = diffs[:len(row)]
		for x := 1; x < len(row); x++ {
			row[x] = uint16(int32(row[x-1]) + diffs[x])
		}
		return
	}
	for x, j := nc, ns; x < len(row); x, j = x+nc, j+ns {
		row[x] = uint16(predict(sv, int32(row[x-nc]), int32(prev[x]), int32(prev[x-nc])) + diffs[j])
	}
}

// predict returns the prediction of selection value sv (T.81 Table H.1)
// from the samples to the left (ra), above (rb) and above-left (rc).
func predict(sv int, ra, rb, rc int32) int32 {
	switch sv {
	case 1:
		return ra
	case 2:
		return rb
	case 3:
		return rc
	case 4:
		return ra + rb - rc
	case 5:
		return ra + (rb-rc)>>1
	case 6:
		return rb + (ra-rc)>>1
	default:
		return (ra + rb) >> 1
	}
}

// restartMarker checks that the data before the next marker was fully
// consumed, then consumes RSTn.
func (d *decoder) restartMarker(r *bitReader, n int) error {
	if r.truncated() {
		return d.errorf(r.pos, "truncated restart interval")
	}
	r.reset()
	m, next, err := d.nextMarker(r.pos)
	if err != nil {
		return err
	}
	if m != mRST0+byte(n) {
		return d.errorf(next-2, "expected RST%d marker, found 0x%02X", n, m)
	}
	r.pos = next
	return nil
}
