package scoring

import "testing"

// setCrashAt makes Run fail at the crash point at (crashAt) until the test
// ends or setCrashAt is called again.
func setCrashAt(t *testing.T, at string) {
	t.Helper()
	old := crashAt
	crashAt = at
	t.Cleanup(func() { crashAt = old })
}
