//go:build tools

// Package deps pins the project's third-party dependencies so that `go mod tidy`
// keeps them in go.mod even before every package that uses them exists.
package deps

import (
	_ "cloud.google.com/go/storage"
	_ "github.com/advancedclimatesystems/gonnx/onnx"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam"
	_ "github.com/fsouza/fake-gcs-server/fakestorage"
	_ "github.com/gomlx/gomlx/graph"
	_ "github.com/google/flatbuffers/go"
	_ "github.com/suyashkumar/dicom"
	_ "github.com/yalue/onnxruntime_go"
	_ "golang.org/x/image/tiff"
)
