package training

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestEvalScriptPool checks that the pool-switched ablation in
// scripts/eval.sh, which gives lgg_flair the industrial images' stride-8
// window in shell arithmetic, computes DefaultFeaturePool's width.
func TestEvalScriptPool(t *testing.T) {
	src, err := os.ReadFile("../../scripts/eval.sh")
	if err != nil {
		t.Fatal(err)
	}
	expr := regexp.MustCompile(`--feature-pool 1,(\$\(\([^"]*?\)\)),1`).FindSubmatch(src)
	if expr == nil {
		t.Fatal("scripts/eval.sh: no pool-switched --feature-pool 1,$((…)),1 for lgg_flair")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, S := range []int{64, 128, 160, 192, 224, 256, 288, 320, 384, 448, 512} {
		out, err := exec.Command(bash, "-c", "size="+strconv.Itoa(S)+"; echo "+string(expr[1])).Output()
		if err != nil {
			t.Fatalf("size %d: %s: %v", S, expr[1], err)
		}
		got, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("size %d: %s printed %q", S, expr[1], out)
		}
		if want := DefaultFeaturePool(S)[1]; got != want {
			t.Errorf("size %d: scripts/eval.sh pools lgg_flair over %d, DefaultFeaturePool %d", S, got, want)
		}
	}
}
