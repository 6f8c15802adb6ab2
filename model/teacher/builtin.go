package teacher

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Builtin is a teacher shipped as a TFLite file in the shared weights
// folder, known by name (multiad train --teacher NAME).
type Builtin struct {
	// Name is the teacher's name, e.g. "mobilenet_v2".
	Name string
	// Path is the TFLite file, relative to the shared folder.
	Path string
	// Features are its tensors at strides 4, 8 and 16 (the last residual
	// add of each stage), and Channels their channel counts.
	Features [3]string
	Channels [3]int
}

// Names of the built-in teachers.
const (
	MobileNetV2      = "mobilenet_v2"
	MobileNetEdgeTPU = "mobilenet_edgetpu"
)

// builtins is the one list of the built-in teachers' files, feature
// tensors and channel counts.
var builtins = []Builtin{
	{
		Name:     MobileNetV2,
		Path:     filepath.Join("weights", "mobilenet_v2", "mobilenet_v2_1.0_224.uint8.tflite"),
		Features: [3]string{"MobilenetV2/expanded_conv_2/add", "MobilenetV2/expanded_conv_5/add", "MobilenetV2/expanded_conv_12/add"},
		Channels: [3]int{24, 32, 96},
	},
	{
		// MobileNet EdgeTPU 1.0: full convolutions in the early blocks; its
		// file records no shapes for computed tensors (inferShapes).
		Name:     MobileNetEdgeTPU,
		Path:     filepath.Join("weights", "mobilenet_edgetpu", "mobilenet_edgetpu_1.0_224.uint8.tflite"),
		Features: [3]string{"MobilenetEdgeTPU/expanded_conv_4/add", "MobilenetEdgeTPU/expanded_conv_8/add", "MobilenetEdgeTPU/expanded_conv_16/add"},
		Channels: [3]int{32, 48, 96},
	},
}

// Builtins returns the built-in teachers.
func Builtins() []Builtin { return append([]Builtin(nil), builtins...) }

// BuiltinNames returns the built-in teachers' names, joined by sep.
func BuiltinNames(sep string) string {
	var names []string
	for _, b := range builtins {
		names = append(names, b.Name)
	}
	return strings.Join(names, sep)
}

// LookupBuiltin returns the built-in teacher called name.
func LookupBuiltin(name string) (Builtin, bool) {
	for _, b := range builtins {
		if b.Name == name {
			return b, true
		}
	}
	return Builtin{}, false
}

// ImportBuiltin imports a built-in teacher from path (b.Path resolved in
// the shared data folder) and checks its feature channels against the
// table. features, if given, replace the built-in feature tensors (three
// names).
func ImportBuiltin(b Builtin, path string, features []string) (*Teacher, error) {
	if len(features) == 0 {
		features = b.Features[:]
	}
	t, err := Import(path, ImportOptions{Features: features})
	if err != nil {
		return nil, err
	}
	if len(features) == 3 && features[0] == b.Features[0] && features[1] == b.Features[1] && features[2] == b.Features[2] && t.FeatureChannels() != b.Channels {
		return nil, fmt.Errorf("teacher: %s has feature channels %v, want %v", b.Name, t.FeatureChannels(), b.Channels)
	}
	return t, nil
}
