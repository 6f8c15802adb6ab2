package ort

import (
	"strings"
	"testing"
)

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]Device{"": DeviceAuto, "auto": DeviceAuto, "CPU": DeviceCPU, "cuda": DeviceCUDA, "gpu": DeviceCUDA} {
		got, err := ParseDevice(in)
		if err != nil || got != want {
			t.Errorf("ParseDevice(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDevice("tpu"); err == nil {
		t.Error("ParseDevice(tpu): no error")
	}
}

func TestCUDAFallback(t *testing.T) {
	// The CPU-only library has no CUDA provider: cuda must fail clearly and
	// auto must fall back to CPU.
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSession([]byte("not a model"), nil, nil, Options{Device: DeviceCPU}); err == nil {
		t.Error("garbage model: no error")
	}
}

func TestCudaHint(t *testing.T) {
	h := cudaHint(errString("blah Failed to load library /x/libonnxruntime_providers_shared.so with error: nope\nmore"))
	if !strings.Contains(h, "libonnxruntime_providers_shared.so") || strings.Contains(h, "more") {
		t.Errorf("hint = %q", h)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
