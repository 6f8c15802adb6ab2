package decode

import (
	"encoding/json"
	"math"

	"github.com/multiad/multiad/io/pixels"
)

// Summary is what `multiad inspect --json` prints for one image. Statistics
// skip NaN; a statistic that is NaN or infinite (e.g. of an all-NaN slice) is
// written as null, since JSON cannot hold NaN.
type Summary struct {
	URI      string `json:"uri"`
	Frame    *int   `json:"frame,omitempty"`
	Slice    *int   `json:"slice,omitempty"`
	Rows     int    `json:"rows"`
	Cols     int    `json:"cols"`
	Channels int    `json:"channels"`
	DType    string `json:"dtype"`
	// Min, Max and Mean are over the stored values.
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
	// RescaledMin, RescaledMax and RescaledMean are over stored*Slope+Intercept.
	RescaledMin    float64 `json:"rescaled_min"`
	RescaledMax    float64 `json:"rescaled_max"`
	RescaledMean   float64 `json:"rescaled_mean"`
	Modality       string  `json:"modality,omitempty"`
	TransferSyntax string  `json:"transfer_syntax,omitempty"`
	Format         string  `json:"format,omitempty"`
	// PHI holds the identifying fields; only filled when asked for.
	PHI map[string]string `json:"phi,omitempty"`
}

// Summarize describes img, read from uri. Identifying fields are included
// only when showPHI is set.
func Summarize(uri string, img *pixels.Image, showPHI bool) Summary {
	s := Summary{URI: uri, Rows: img.Rows, Cols: img.Cols, Channels: img.Channels, DType: img.DType.String(),
		Modality: img.Meta.Modality, TransferSyntax: img.Meta.TransferSyntax, Format: img.Meta.Format}
	idx := img.Index
	switch img.IndexKind {
	case "frame":
		s.Frame = &idx
	case "slice":
		s.Slice = &idx
	}
	if img.Validate() == nil {
		st := pixels.StatsOf(img.Stored())
		s.Min, s.Max, s.Mean = st.Min, st.Max, st.Mean
		rs := pixels.StatsOf(img.Rescaled())
		s.RescaledMin, s.RescaledMax, s.RescaledMean = rs.Min, rs.Max, rs.Mean
	} else {
		nan := math.NaN()
		s.Min, s.Max, s.Mean, s.RescaledMin, s.RescaledMax, s.RescaledMean = nan, nan, nan, nan, nan, nan
	}
	if showPHI {
		id := img.Meta.Identity
		for k, v := range map[string]string{
			"patient_name": id.PatientName, "patient_id": id.PatientID, "patient_birth_date": id.PatientBirthDate,
			"accession_number": id.AccessionNumber, "study_instance_uid": id.StudyInstanceUID,
			"series_instance_uid": id.SeriesInstanceUID, "sop_instance_uid": id.SOPInstanceUID,
		} {
			if v != "" {
				if s.PHI == nil {
					s.PHI = map[string]string{}
				}
				s.PHI[k] = v
			}
		}
	}
	return s
}

// MarshalJSON writes the summary with NaN and infinite statistics as null.
func (s Summary) MarshalJSON() ([]byte, error) {
	type plain Summary // without this method
	num := func(v float64) *float64 {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return &v
	}
	return json.Marshal(struct {
		plain
		Min          *float64 `json:"min"`
		Max          *float64 `json:"max"`
		Mean         *float64 `json:"mean"`
		RescaledMin  *float64 `json:"rescaled_min"`
		RescaledMax  *float64 `json:"rescaled_max"`
		RescaledMean *float64 `json:"rescaled_mean"`
	}{plain(s), num(s.Min), num(s.Max), num(s.Mean), num(s.RescaledMin), num(s.RescaledMax), num(s.RescaledMean)})
}
