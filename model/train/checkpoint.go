package train

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"
	"github.com/multiad/multiad/model/student"
)

// checkpointMagic starts every checkpoint file.
const checkpointMagic = "multiad-train-ckpt-v1\n"

// maxCheckpointBytes bounds the size of a checkpoint file read back.
const maxCheckpointBytes = 2 << 30

type ckptVar struct {
	Path      string
	Trainable bool
	Dims      []int
	F32       []float32
	I64       []int64
}

type ckptFile struct {
	Config Config
	Step   int
	Vars   []ckptVar
}

// save writes every variable (student, discriminator, optimizer state) to
// cfg.Checkpoint atomically.
func (t *trainer) save(step int) error {
	f := ckptFile{Config: t.cfg, Step: step}
	f.Config.Checkpoint = ""
	for v := range t.store.IterVariables() {
		val := v.MustValue()
		cv := ckptVar{Path: v.Path(), Trainable: v.Trainable, Dims: v.Shape().Dimensions}
		switch v.DType() {
		case dtypes.Float32:
			cv.F32 = tensors.MustCopyFlatData[float32](val)
		case dtypes.Int64:
			cv.I64 = tensors.MustCopyFlatData[int64](val)
		default:
			return fmt.Errorf("train: checkpoint: variable %s has unsupported dtype %s", v.Path(), v.DType())
		}
		f.Vars = append(f.Vars, cv)
	}
	var buf bytes.Buffer
	buf.WriteString(checkpointMagic)
	if err := gob.NewEncoder(&buf).Encode(&f); err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(t.cfg.Checkpoint), ".ckpt-*")
	if err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("train: checkpoint %s: %w", t.cfg.Checkpoint, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", t.cfg.Checkpoint, err)
	}
	if err := os.Rename(tmp.Name(), t.cfg.Checkpoint); err != nil {
		return fmt.Errorf("train: checkpoint %s: %w", t.cfg.Checkpoint, err)
	}
	return nil
}

// trainingPart is c without the settings that do not change the trained
// weights: the anomaly map (fusion, σ, scale weights), the calibration
// quantile, progress reporting, the backend and the checkpoint path.
func trainingPart(c Config) Config {
	c.Map, c.Quantile, c.ProgressEvery, c.Backend, c.Checkpoint = student.MapConfig{}, 0, 0, "", ""
	return c
}

// readCheckpoint reads and decodes the checkpoint file at path (at most
// maxCheckpointBytes). A missing file gives an error wrapping
// fs.ErrNotExist.
func readCheckpoint(path string) (*ckptFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("train: checkpoint: %w", err)
	}
	if st.Size() > maxCheckpointBytes {
		return nil, fmt.Errorf("train: checkpoint %s is %d bytes, limit %d", path, st.Size(), maxCheckpointBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("train: checkpoint: %w", err)
	}
	if !bytes.HasPrefix(b, []byte(checkpointMagic)) {
		return nil, fmt.Errorf("train: checkpoint %s: not a multiad training checkpoint", path)
	}
	var f ckptFile
	if err := gob.NewDecoder(bytes.NewReader(b[len(checkpointMagic):])).Decode(&f); err != nil {
		return nil, fmt.Errorf("train: checkpoint %s: %w", path, err)
	}
	return &f, nil
}

// CheckpointStudent reads the checkpoint at path and returns the
// configuration it was written with and its student weights, keyed as
// Result.Student (for Score or StudentStore).
func CheckpointStudent(path string) (Config, map[string]student.Tensor, error) {
	f, err := readCheckpoint(path)
	if err != nil {
		return Config{}, nil, err
	}
	weights := map[string]student.Tensor{}
	prefix := "/" + StudentScope + "/"
	for _, v := range f.Vars {
		if v.Trainable && v.F32 != nil && strings.HasPrefix(v.Path, prefix) {
			weights[v.Path[len(prefix)-1:]] = student.Tensor{Dims: v.Dims, Data: v.F32}
		}
	}
	return f.Config, weights, nil
}

// resume loads cfg.Checkpoint into the store if the file exists. The
// checkpoint's configuration must match cfg except for trainingPart's
// omissions, so that a finished run's checkpoint can be resumed with another
// anomaly map or quantile: it trains no further and calibrates and exports
// the same weights with the new settings.
func (t *trainer) resume() error {
	if t.cfg.Checkpoint == "" {
		return nil
	}
	f, err := readCheckpoint(t.cfg.Checkpoint)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(trainingPart(f.Config), trainingPart(t.cfg)) {
		return fmt.Errorf("train: checkpoint %s was written with a different configuration (%+v)", t.cfg.Checkpoint, f.Config)
	}
	for _, v := range f.Vars {
		n := 1
		for _, d := range v.Dims {
			n *= d
		}
		var val *tensors.Tensor
		switch {
		case v.F32 != nil && len(v.F32) == n:
			val = tensors.FromFlatDataAndDimensions(v.F32, v.Dims...)
		case v.I64 != nil && len(v.I64) == n:
			val = tensors.FromFlatDataAndDimensions(v.I64, v.Dims...)
		default:
			return fmt.Errorf("train: checkpoint %s: variable %s has no data of shape %v", t.cfg.Checkpoint, v.Path, v.Dims)
		}
		nv, err := t.store.CreateVariable(v.Path, val)
		if err != nil {
			return fmt.Errorf("train: checkpoint %s: variable %s: %w", t.cfg.Checkpoint, v.Path, err)
		}
		nv.SetTrainable(v.Trainable)
	}
	t.startStep = f.Step
	return nil
}
