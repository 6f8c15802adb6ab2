package main

import (
	"context"
	"fmt"

	"github.com/multiad/multiad/internal/version"
)

func init() {
	register("version", "print the multiad version", func(ctx context.Context, args []string) int {
		fmt.Println("multiad", version.Version)
		return 0
	})
}
