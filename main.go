// SPDX-License-Identifier: Apache-2.0

// Command resilire is the Resilire high-availability appliance for virtual machines.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/resilire/resilire/cli"
)

// gcPercent is the agents' GOGC unless the environment sets one. Their
// heap is mostly a few large pointer-free buffers (FGBI's shadow cache,
// fingerprints, chunk buffers) that a collection marks at almost no cost,
// while Go's default of 100 lets the heap grow to twice them in dom0, per
// protected VM: for a 128 MiB guest on the group rig the protect agent's
// own memory (RssAnon) is 132-137 MiB at 25 against 159-160 MiB at 100,
// the standby's 42-47 against 61-66 (README, "Memory in dom0").
const gcPercent = 25

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Stdout, os.Stderr, os.Args)
	stop()
	os.Exit(code)
}
