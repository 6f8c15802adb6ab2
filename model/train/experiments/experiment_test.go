//go:build experiment

package experiments

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/multiad/multiad/model/train"
	"github.com/multiad/multiad/model/train/traintest"
)

func envF(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

// mobileNetSamples computes the real teacher's features (MobileNetV2
// imported from TFLite, run in ONNX Runtime) for images.
func mobileNetSamples(t testing.TB, images [][]float32, S int) []train.Sample {
	t.Helper()
	out, err := mobileNetTeacher(t, S)(images)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mobileNetTeacher is the real MobileNetV2 teacher in ONNX Runtime as a
// train.TeacherFunc (EXP_FEAT, comma-separated, selects other layers); its
// session is closed when the test ends.
func mobileNetTeacher(t testing.TB, S int) train.TeacherFunc {
	t.Helper()
	var features []string
	if f := os.Getenv("EXP_FEAT"); f != "" {
		features = strings.Split(f, ",")
	}
	return train.SessionTeacher(traintest.MobileNetSession(t, features), S, 8)
}
