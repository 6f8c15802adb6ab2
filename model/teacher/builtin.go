package teacher

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Builtin is a teacher shipped as a TFLite file in the shared weights
// folder, known by name (multiad train --teacher NAME).
type Builtin struct {
	// Name is the teacher's name, e.g. "mobilenet_v2".
	Name string
	// Path is the TFLite file, relative to the shared folder.
	Path string
	// Layers are the named sets of feature tensors it offers
	// (LayersStageEnds, the default, and LayersExpanded).
	Layers map[string]Layers
}

// Layers is one choice of feature tensors at strides 4, 8 and 16, with
// their channel counts.
type Layers struct {
	Features [3]string
	Channels [3]int
}

// Names of the built-in teachers and of their layer sets.
const (
	MobileNetV2      = "mobilenet_v2"
	MobileNetEdgeTPU = "mobilenet_edgetpu"
	// LayersStageEnds (the default) are the last residual add of each
	// stage: narrow (projected) features.
	LayersStageEnds = "stage_ends"
	// LayersExpanded keep the stride-4 stage end and take, at strides 8
	// and 16, the expanded activations that the stage's last block
	// projects down to the stage end (its depthwise output, or the expand
	// convolution's in EdgeTPU's fused blocks): 4–6× wider.
	LayersExpanded = "expanded"
)

// builtins is the one list of the built-in teachers' files, feature
// tensors and channel counts.
var builtins = []Builtin{
	{
		Name: MobileNetV2,
		Path: filepath.Join("weights", "mobilenet_v2", "mobilenet_v2_1.0_224.uint8.tflite"),
		Layers: map[string]Layers{
			LayersStageEnds: {[3]string{"MobilenetV2/expanded_conv_2/add", "MobilenetV2/expanded_conv_5/add", "MobilenetV2/expanded_conv_12/add"}, [3]int{24, 32, 96}},
			LayersExpanded:  {[3]string{"MobilenetV2/expanded_conv_2/add", "MobilenetV2/expanded_conv_5/depthwise/Relu6", "MobilenetV2/expanded_conv_12/depthwise/Relu6"}, [3]int{24, 192, 576}},
		},
	},
	{
		// MobileNet EdgeTPU 1.0: full convolutions in the early blocks; its
		// file records no shapes for computed tensors (inferShapes) and
		// names most tensors by several ';'-joined names (Import matches one).
		Name: MobileNetEdgeTPU,
		Path: filepath.Join("weights", "mobilenet_edgetpu", "mobilenet_edgetpu_1.0_224.uint8.tflite"),
		Layers: map[string]Layers{
			LayersStageEnds: {[3]string{"MobilenetEdgeTPU/expanded_conv_4/add", "MobilenetEdgeTPU/expanded_conv_8/add", "MobilenetEdgeTPU/expanded_conv_16/add"}, [3]int{32, 48, 96}},
			LayersExpanded:  {[3]string{"MobilenetEdgeTPU/expanded_conv_4/add", "MobilenetEdgeTPU/expanded_conv_8/expand/Relu", "MobilenetEdgeTPU/expanded_conv_16/depthwise/Relu"}, [3]int{32, 192, 384}},
		},
	},
}

// Default returns the teacher's default layers (LayersStageEnds).
func (b Builtin) Default() Layers { return b.Layers[LayersStageEnds] }

// LayerNames returns the names of b's layer sets, sorted, joined by sep.
func (b Builtin) LayerNames(sep string) string {
	var names []string
	for n := range b.Layers {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, sep)
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
// the shared data folder). features selects its feature tensors: none for
// the default layers, one layer-set name (e.g. LayersExpanded), or three
// tensor names. A layer set's channel counts are checked against the table.
func ImportBuiltin(b Builtin, path string, features []string) (*Teacher, error) {
	set := LayersStageEnds
	if len(features) == 1 {
		set = features[0]
	}
	layers, named := b.Layers[set]
	switch {
	case len(features) <= 1 && !named:
		return nil, fmt.Errorf("teacher: %s has no layer set %q (it has %s; or name three tensors)", b.Name, set, b.LayerNames(", "))
	case named:
		features = layers.Features[:]
	}
	t, err := Import(path, ImportOptions{Features: features})
	if err != nil {
		return nil, err
	}
	if named && t.FeatureChannels() != layers.Channels {
		return nil, fmt.Errorf("teacher: %s %s has feature channels %v, want %v", b.Name, set, t.FeatureChannels(), layers.Channels)
	}
	return t, nil
}
