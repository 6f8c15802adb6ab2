// Package experiments holds the research behind bench/ACCURACY.md: manual
// experiments on the real datasets, outside the product package model/train.
// They build only with the experiment tag and run only with MULTIAD_EXP=1,
// e.g.
//
//	MULTIAD_EXP=1 go test -tags experiment -run TestExperimentKNN -v ./model/train/experiments
//
// EXP_* environment variables set each experiment's parameters. Without the
// tag the package is this comment alone, so go build, go vet and go test
// leave the experiments out.
package experiments
