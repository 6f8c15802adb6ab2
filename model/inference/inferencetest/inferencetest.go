// Package inferencetest writes model bundles for tests of code that needs one
// (scoring, reports, pipelines) without training a model.
package inferencetest

import (
	"context"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"
	"google.golang.org/protobuf/proto"

	"github.com/multiad/multiad/internal/version"
	"github.com/multiad/multiad/model/bundle"
	"github.com/multiad/multiad/model/preprocess"
)

// WriteBundle writes a tiny valid bundle to dir, loadable with
// inference.Load: its "anomaly map" is 1 − the channel mean of the input
// (dark pixels score high) and its score is the map's maximum. The
// threshold is 0.5.
func WriteBundle(dir string, size int) error {
	g := &onnx.GraphProto{Name: "multiad-test"}
	vi := func(name string, dims ...any) *onnx.ValueInfoProto {
		var ds []*onnx.TensorShapeProto_Dimension
		for _, d := range dims {
			switch d := d.(type) {
			case string:
				ds = append(ds, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: d}})
			case int:
				ds = append(ds, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
			}
		}
		return &onnx.ValueInfoProto{Name: name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: int32(onnx.TensorProto_FLOAT), Shape: &onnx.TensorShapeProto{Dim: ds}}}}}
	}
	ints := func(name string, v ...int64) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INTS, Ints: v}
	}
	one := func(name string) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: 1}
	}
	zero := func(name string) *onnx.AttributeProto {
		return &onnx.AttributeProto{Name: name, Type: onnx.AttributeProto_INT, I: 0}
	}
	g.Input = []*onnx.ValueInfoProto{vi("image", "N", 3, size, size)}
	g.Output = []*onnx.ValueInfoProto{vi("anomaly_map", "N", 1, size, size), vi("score", "N")}
	g.Initializer = []*onnx.TensorProto{{Name: "one", DataType: int32(onnx.TensorProto_FLOAT), FloatData: []float32{1}}}
	g.Node = []*onnx.NodeProto{
		{OpType: "ReduceMean", Input: []string{"image"}, Output: []string{"mean"}, Attribute: []*onnx.AttributeProto{ints("axes", 1), one("keepdims")}},
		{OpType: "Sub", Input: []string{"one", "mean"}, Output: []string{"anomaly_map"}},
		{OpType: "ReduceMax", Input: []string{"anomaly_map"}, Output: []string{"score"}, Attribute: []*onnx.AttributeProto{ints("axes", 1, 2, 3), zero("keepdims")}},
	}
	m := &onnx.ModelProto{IrVersion: 8, ProducerName: "multiad", Graph: g,
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: "", Version: 13}}}
	data, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	b := &bundle.Bundle{Model: data, Manifest: bundle.Manifest{
		Version:    version.Version,
		Channels:   3,
		Preprocess: preprocess.Default(size),
		Teacher:    bundle.Teacher{Name: "test", SHA256: bundle.SHA256(nil)},
		Input:      "image",
		Outputs:    []string{"anomaly_map", "score"},
		Scores:     bundle.Scores{Threshold: 0.5, Quantile: 0.99, PixelThreshold: 0.5, Min: 0, Max: 1, PixelMin: 0, PixelMax: 1},
		Trained:    time.Unix(0, 0).UTC(),
	}}
	return bundle.Save(context.Background(), dir, b)
}
