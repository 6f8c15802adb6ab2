// Package traintest provides what the tests of model/train and its
// experiments share: the real MobileNetV2 teacher from the shared data
// folder, run in ONNX Runtime.
package traintest

import (
	"testing"

	"github.com/multiad/multiad/internal/shared"
	"github.com/multiad/multiad/model/ort"
	"github.com/multiad/multiad/model/teacher"
)

// MobileNetSession imports the MobileNetV2 teacher from the shared folder's
// TFLite weights and returns an ONNX Runtime session whose outputs are its
// three feature maps (teacher.FeatureOutputs), for train.SessionTeacher or
// train.TeacherFeatures. features, if not empty, names other layers
// (teacher.ImportOptions.Features). The session is closed when the test
// ends.
func MobileNetSession(t testing.TB, features []string) *ort.Session {
	t.Helper()
	tt, err := teacher.Import(shared.MustPath(t, "weights", "mobilenet_v2", "mobilenet_v2_1.0_224.uint8.tflite"), teacher.ImportOptions{Features: features})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tt.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewSession(m, nil, teacher.FeatureOutputs[:], ort.Options{IntraOpThreads: 1, Device: ort.DeviceCPU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}
