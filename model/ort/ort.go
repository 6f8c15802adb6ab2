// Package ort wraps ONNX Runtime (through github.com/yalue/onnxruntime_go)
// for multiad: it finds and loads the shared library once per process, and
// runs float32 graphs with named inputs and outputs on CPU or CUDA.
package ort

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	onnxpb "github.com/advancedclimatesystems/gonnx/onnx"
	onnx "github.com/yalue/onnxruntime_go"
	"google.golang.org/protobuf/proto"
)

// LibEnvVar names the environment variable that points at libonnxruntime.so.
const LibEnvVar = "MULTIAD_ORT_LIB"

const libName = "libonnxruntime.so.1"

var (
	initOnce sync.Once
	initErr  error
	libPath  string
)

// LibraryPath returns the ONNX Runtime shared library that Init loads:
// $MULTIAD_ORT_LIB, else libonnxruntime.so.1 next to the executable, else
// .cache/onnxruntime/libonnxruntime.so.1 in the working directory or any of
// its parents (where `make setup` puts it).
func LibraryPath() (string, error) {
	if p := os.Getenv(LibEnvVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ort: %s=%s: %w", LibEnvVar, p, err)
		}
		return p, nil
	}
	var cands []string
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), libName))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			cands = append(cands, filepath.Join(d, ".cache", "onnxruntime", libName))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("ort: %s not found; run `make setup` or set %s", libName, LibEnvVar)
}

// Init loads the ONNX Runtime library and creates the process-wide
// environment. It is safe to call many times; only the first call works.
func Init() error {
	initOnce.Do(func() {
		libPath, initErr = LibraryPath()
		if initErr != nil {
			return
		}
		onnx.SetSharedLibraryPath(libPath)
		if err := onnx.InitializeEnvironment(onnx.WithLogLevelError()); err != nil {
			initErr = fmt.Errorf("ort: loading %s: %w", libPath, err)
		}
	})
	return initErr
}

// Device selects where a session runs.
type Device string

// Devices accepted by Options.Device.
const (
	DeviceAuto Device = "auto"
	DeviceCPU  Device = "cpu"
	DeviceCUDA Device = "cuda"
)

// ParseDevice parses "auto", "cpu" or "cuda" ("" means auto).
func ParseDevice(s string) (Device, error) {
	switch Device(strings.ToLower(s)) {
	case "", DeviceAuto:
		return DeviceAuto, nil
	case DeviceCPU:
		return DeviceCPU, nil
	case DeviceCUDA, "gpu":
		return DeviceCUDA, nil
	}
	return "", fmt.Errorf("unknown device %q (want auto, cpu or cuda)", s)
}

// Options configure a Session.
type Options struct {
	// IntraOpThreads is ONNX Runtime's intra-op thread count; 0 lets it choose.
	IntraOpThreads int
	// Device is auto (CUDA if its provider loads, else CPU), cpu or cuda
	// (an error if CUDA cannot be used).
	Device Device
	// DeviceID is the CUDA device ordinal.
	DeviceID int
	// GPUMemLimit bounds the CUDA arena in bytes (0: no bound).
	GPUMemLimit int64
	// Unoptimized runs the graph as written, with ONNX Runtime's graph
	// rewrites off. Use it where the graph's exact arithmetic matters more
	// than speed: ONNX Runtime reads QuantizeLinear/DequantizeLinear around
	// a Conv as a request to quantize, re-quantizing its float weights to
	// int8 and fusing it into an integer kernel.
	Unoptimized bool
}

// Session runs one ONNX graph. It is safe for concurrent use.
type Session struct {
	sess    *onnx.DynamicAdvancedSession
	inputs  []string
	outputs []string
	device  Device
}

// Device reports where the session actually runs (cpu or cuda).
func (s *Session) Device() Device { return s.device }

// InputNames returns the graph's input names, in Run's order.
func (s *Session) InputNames() []string { return s.inputs }

// OutputNames returns the graph's output names, in Run's order.
func (s *Session) OutputNames() []string { return s.outputs }

// IO lists the input and output names of an ONNX model file.
func IO(model []byte) (inputs, outputs []string, err error) {
	if err := Init(); err != nil {
		return nil, nil, err
	}
	ins, outs, err := onnx.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, nil, fmt.Errorf("ort: reading model inputs/outputs: %w", err)
	}
	for _, i := range ins {
		inputs = append(inputs, i.Name)
	}
	for _, o := range outs {
		outputs = append(outputs, o.Name)
	}
	return inputs, outputs, nil
}

// checkNames reports an error when the graph of the serialized model lacks
// one of the named inputs or outputs (ONNX Runtime itself would accept the
// names and fail each Run). It reads the graph with the ONNX protobuf
// definitions, at a fraction of the cost of IO's throw-away session, and
// reads nothing when no name is given.
func checkNames(model []byte, inputs, outputs []string) error {
	if len(inputs) == 0 && len(outputs) == 0 {
		return nil
	}
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(model, &m); err != nil {
		return fmt.Errorf("ort: not an ONNX model: %w", err)
	}
	check := func(kind string, names []string, graph []*onnxpb.ValueInfoProto) error {
		have := make([]string, len(graph))
		for i, v := range graph {
			have[i] = v.GetName()
		}
		for _, n := range names {
			if !slices.Contains(have, n) {
				return fmt.Errorf("ort: the model has no %s %q (its %ss: %s)", kind, n, kind, strings.Join(have, ", "))
			}
		}
		return nil
	}
	if err := check("input", inputs, m.GetGraph().GetInput()); err != nil {
		return err
	}
	return check("output", outputs, m.GetGraph().GetOutput())
}

// NewSession builds a session for the serialized model. If outputs is nil,
// every graph output is returned by Run, in graph order.
func NewSession(model []byte, inputs, outputs []string, opt Options) (*Session, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	// The caller's names are checked; names from IO are the graph's own.
	if err := checkNames(model, inputs, outputs); err != nil {
		return nil, err
	}
	if inputs == nil || outputs == nil {
		// IO builds a throw-away session: only when names are missing.
		gin, gout, err := IO(model)
		if err != nil {
			return nil, err
		}
		if inputs == nil {
			inputs = gin
		}
		if outputs == nil {
			outputs = gout
		}
	}
	dev := opt.Device
	if dev == "" {
		dev = DeviceAuto
	}
	// The deferred releases update the results sess and berr (not the
	// err variables of the blocks).
	build := func(cuda bool) (sess *onnx.DynamicAdvancedSession, berr error) {
		so, err := onnx.NewSessionOptions()
		if err != nil {
			return nil, err
		}
		defer releaseOptions(so, "session options", &sess, &berr)
		if opt.IntraOpThreads > 0 {
			if err := so.SetIntraOpNumThreads(opt.IntraOpThreads); err != nil {
				return nil, err
			}
		}
		if err := so.SetInterOpNumThreads(1); err != nil {
			return nil, err
		}
		if opt.Unoptimized {
			if err := so.SetGraphOptimizationLevel(onnx.GraphOptimizationLevelDisableAll); err != nil {
				return nil, err
			}
		}
		// Idle intra-op threads would otherwise spin between the small
		// kernels of these graphs, burning the cores that decoding and the
		// pipeline need: measured 2 threads went from 0.57× to ~1.7× of
		// the 1-thread speed with spinning off (bench/BENCHMARKS.md).
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, err
		}
		if cuda {
			co, err := onnx.NewCUDAProviderOptions()
			if err != nil {
				return nil, err
			}
			defer releaseOptions(co, "CUDA provider options", &sess, &berr)
			m := map[string]string{"device_id": fmt.Sprint(opt.DeviceID)}
			if opt.GPUMemLimit > 0 {
				m["gpu_mem_limit"] = fmt.Sprint(opt.GPUMemLimit)
			}
			if err := co.Update(m); err != nil {
				return nil, err
			}
			if err := so.AppendExecutionProviderCUDA(co); err != nil {
				return nil, err
			}
		}
		return onnx.NewDynamicAdvancedSessionWithONNXData(model, inputs, outputs, so)
	}
	var s *onnx.DynamicAdvancedSession
	var err error
	actual := DeviceCPU
	if dev == DeviceCUDA || dev == DeviceAuto {
		s, err = build(true)
		if err == nil {
			actual = DeviceCUDA
		} else if dev == DeviceCUDA {
			return nil, fmt.Errorf("ort: CUDA execution provider unavailable: %s", cudaHint(err))
		} else {
			// Expected on a machine without a GPU: one short line at
			// info, the provider's error at debug.
			slog.Info("multiad: no CUDA; running on CPU")
			slog.Debug("multiad: the CUDA execution provider did not load", "reason", cudaHint(err))
		}
	}
	if s == nil {
		if s, err = build(false); err != nil {
			return nil, fmt.Errorf("ort: creating session: %w", err)
		}
	}
	return &Session{sess: s, inputs: inputs, outputs: outputs, device: actual}, nil
}

// releaseOptions destroys the options o once the session they configured is
// built (or not); when that fails, the build fails and its session is
// released.
func releaseOptions(o interface{ Destroy() error }, what string, sess **onnx.DynamicAdvancedSession, err *error) {
	derr := o.Destroy()
	if derr == nil {
		return
	}
	*err = errors.Join(*err, fmt.Errorf("ort: releasing %s: %w", what, derr))
	if *sess != nil {
		*err = errors.Join(*err, (*sess).Destroy())
		*sess = nil
	}
}

// cudaHint condenses ONNX Runtime's provider-loading error to the missing
// library when it names one.
func cudaHint(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "Failed to load library"); i >= 0 {
		msg = msg[i:]
		if j := strings.IndexAny(msg, "\n"); j >= 0 {
			msg = msg[:j]
		}
		dir := filepath.Dir(libPath)
		return msg + " (the CUDA provider needs libonnxruntime_providers_shared.so and libonnxruntime_providers_cuda.so in " + dir + ", plus CUDA 12 and cuDNN 9)"
	}
	return msg
}

// Tensor is a float32 tensor with its shape.
type Tensor struct {
	Shape []int64
	Data  []float32
}

// Run evaluates the graph on float32 inputs (in InputNames order) and
// returns the outputs in OutputNames order.
func (s *Session) Run(inputs ...Tensor) (res []Tensor, err error) {
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("ort: %d inputs given, graph takes %d (%v)", len(inputs), len(s.inputs), s.inputs)
	}
	ins := make([]onnx.Value, len(inputs))
	defer func() {
		for i, v := range ins {
			if v == nil {
				continue
			}
			if derr := v.Destroy(); derr != nil {
				err = errors.Join(err, fmt.Errorf("ort: releasing input %q: %w", s.inputs[i], derr))
				res = nil
			}
		}
	}()
	for i, t := range inputs {
		var n int64 = 1
		for _, d := range t.Shape {
			n *= d
		}
		if n != int64(len(t.Data)) {
			return nil, fmt.Errorf("ort: input %q has %d values, shape %v needs %d", s.inputs[i], len(t.Data), t.Shape, n)
		}
		v, err := onnx.NewTensor(onnx.NewShape(t.Shape...), t.Data)
		if err != nil {
			return nil, fmt.Errorf("ort: input %q: %w", s.inputs[i], err)
		}
		ins[i] = v
	}
	outs := make([]onnx.Value, len(s.outputs))
	if err := s.sess.Run(ins, outs); err != nil {
		return nil, fmt.Errorf("ort: run: %w", err)
	}
	res = make([]Tensor, len(outs))
	var errs []error
	for i, v := range outs {
		t, ok := v.(*onnx.Tensor[float32])
		if !ok {
			errs = append(errs, fmt.Errorf("ort: output %q is not float32", s.outputs[i]))
			if derr := v.Destroy(); derr != nil {
				errs = append(errs, fmt.Errorf("ort: releasing output %q: %w", s.outputs[i], derr))
			}
			continue
		}
		res[i] = Tensor{Shape: append([]int64(nil), t.GetShape()...), Data: append([]float32(nil), t.GetData()...)}
		if derr := t.Destroy(); derr != nil {
			errs = append(errs, fmt.Errorf("ort: releasing output %q: %w", s.outputs[i], derr))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return res, nil
}

// Close releases the session.
func (s *Session) Close() error {
	if s == nil || s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	return err
}
