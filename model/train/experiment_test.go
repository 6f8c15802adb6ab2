package train

import (
	"os"
	"strconv"
	"testing"
)

func envF(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil {
		return v
	}
	return def
}

// TestExperimentKD is a manual experiment (set MULTIAD_EXP=1): KD loss of
// configurable students on real tiles with the real teacher.
func TestExperimentKD(t *testing.T) {
	if os.Getenv("MULTIAD_EXP") == "" {
		t.Skip("set MULTIAD_EXP=1")
	}
	S := int(envF("EXP_S", 64))
	imgs := loadTiles(t, int(envF("EXP_N", 8)), S)
	data := mobileNetSamples(t, imgs, S)
	cfg := DefaultConfig(S)
	cfg.Student.Width = int(envF("EXP_W", 16))
	cfg.Student.Depth = int(envF("EXP_D", 1))
	cfg.Epochs = 0
	cfg.MaxSteps = int(envF("EXP_STEPS", 100))
	cfg.BatchSize = int(envF("EXP_B", 4))
	cfg.LR = envF("EXP_LR", 3e-3)
	cfg.AdvWeight = envF("EXP_ADV", 0.05)
	if s := os.Getenv("EXP_SCHED"); s != "" {
		cfg.Schedule = s
	}
	res, err := Train(cfg, Dataset{Train: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	last := res.EpochKDLoss[len(res.EpochKDLoss)-1]
	t.Logf("%+v: KD %.4f → %.4f (%.1f×)", cfg.Student, res.FirstKDLoss, last, res.FirstKDLoss/last)
}
