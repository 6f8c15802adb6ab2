package train

import (
	"fmt"

	"github.com/multiad/multiad/model/ort"
)

// TeacherFeatures runs the teacher (an ONNX Runtime session whose outputs
// are feat_s4, feat_s8, feat_s16, in that order, e.g. from
// ort.NewSession(teacherONNX, nil, teacher.FeatureOutputs[:], …)) on images
// ([3,S,S] each), batch images at a time, and returns them as samples with
// their cached features.
func TeacherFeatures(sess *ort.Session, images [][]float32, S, batch int) ([]Sample, error) {
	if len(sess.OutputNames()) != 3 {
		return nil, fmt.Errorf("train: teacher session has outputs %v, want the 3 feature maps", sess.OutputNames())
	}
	if batch < 1 {
		batch = 1
	}
	out := make([]Sample, 0, len(images))
	for i := 0; i < len(images); i += batch {
		chunk := images[i:min(i+batch, len(images))]
		data := make([]float32, 0, len(chunk)*3*S*S)
		for j, img := range chunk {
			if len(img) != 3*S*S {
				return nil, fmt.Errorf("train: image %d has %d values, want 3×%d×%d = %d", i+j, len(img), S, S, 3*S*S)
			}
			data = append(data, img...)
		}
		res, err := sess.Run(ort.Tensor{Shape: []int64{int64(len(chunk)), 3, int64(S), int64(S)}, Data: data})
		if err != nil {
			return nil, fmt.Errorf("train: teacher features of images %d–%d: %w", i, i+len(chunk)-1, err)
		}
		for j, img := range chunk {
			s := Sample{Image: img}
			for k, r := range res {
				per := len(r.Data) / len(chunk)
				s.Feats[k] = r.Data[j*per : (j+1)*per]
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// SessionTeacher is a TeacherFunc running the teacher session sess (as for
// TeacherFeatures) on images of side S, batch at a time.
func SessionTeacher(sess *ort.Session, S, batch int) TeacherFunc {
	return func(images [][]float32) ([]Sample, error) {
		return TeacherFeatures(sess, images, S, batch)
	}
}
