// SPDX-License-Identifier: Apache-2.0

// Command resilire is the Resilire high-availability appliance for virtual machines.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/resilire/resilire/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Stdout, os.Stderr, os.Args)
	stop()
	os.Exit(code)
}
