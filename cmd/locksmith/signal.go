package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// signalContext ends when the process receives SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
