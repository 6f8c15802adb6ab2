package testenv

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// fakeTB records how a test would have ended.
type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }

func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		env        string
		skip, fail bool
	}{{"", true, false}, {"0", true, false}, {"1", false, true}} {
		t.Setenv(RequireEnv, tc.env)
		var f fakeTB
		Missing(&f, "no %s", "data")
		if (f.skipped != "") != tc.skip || (f.failed != "") != tc.fail {
			t.Errorf("%s=%q: skipped %q, failed %q", RequireEnv, tc.env, f.skipped, f.failed)
		}
		if msg := f.skipped + f.failed; !strings.HasPrefix(msg, "no data (") || !strings.Contains(msg, RequireEnv) {
			t.Errorf("%s=%q: message %q", RequireEnv, tc.env, msg)
		}
	}
}

func TestPythonAndTool(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: unit tests only, no Python")
	}
	t.Setenv(RequireEnv, "")
	t.Setenv(PythonEnv, "")
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on PATH to check against")
	}
	var f fakeTB
	if p := Python(&f, "json", "sys"); p == "" || f.skipped != "" || f.failed != "" {
		t.Errorf("Python(json, sys) = %q, skipped %q, failed %q", p, f.skipped, f.failed)
	}
	f = fakeTB{}
	Python(&f, "json", "no_such_module_multiad")
	if !strings.Contains(f.skipped, "lacks module no_such_module_multiad (Debian: python3-no_such_module_multiad)") || f.failed != "" {
		t.Errorf("missing module: skipped %q, failed %q", f.skipped, f.failed)
	}
	f = fakeTB{}
	t.Setenv(RequireEnv, "1")
	Tool(&f, "no-such-tool-multiad", "nopkg")
	if !strings.Contains(f.failed, "no-such-tool-multiad not found (Debian package nopkg)") || f.skipped != "" {
		t.Errorf("missing tool, required: skipped %q, failed %q", f.skipped, f.failed)
	}
}
