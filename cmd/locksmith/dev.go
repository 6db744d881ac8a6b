package main

import (
	"context"
	"io"
)

func cmdDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return &usageError{"dev: not built yet"}
}
