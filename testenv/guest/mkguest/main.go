// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/resilire/resilire/testenv/guest"
)

func main() {
	dir := flag.String("dir", guest.DefaultDir(), "asset directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	a, err := guest.BuildWith(ctx, guest.Options{Dir: *dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkguest: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("kernel  %s (%s)\ninitrd  %s\nin %v\n", a.Kernel, a.KernelPackage, a.Initrd, time.Since(start).Round(time.Millisecond))
}
