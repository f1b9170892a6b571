// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/resilire/resilire/testenv/kernelvm"
)

// pkgList is the repeatable -pkg flag.
type pkgList []string

func (p *pkgList) String() string     { return strings.Join(*p, ",") }
func (p *pkgList) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	var pkgs pkgList
	flag.Var(&pkgs, "pkg", "package to test, e.g. ./netbuf (repeatable; default: bpf, dataplane, netbuf and the cli input-log/inject tests)")
	runRe := flag.String("run", "", "-test.run filter for the -pkg packages")
	kernel := flag.String("kernel", kernelvm.DefaultKernel, "Debian kernel package to boot")
	mem := flag.Int("mem", 1536, "VM memory in MiB (at most 2048)")
	cpus := flag.Int("cpus", 2, "VM vCPUs")
	timeout := flag.Duration("timeout", 15*time.Minute, "limit for the whole run")
	console := flag.String("console", "", "copy the kernel console to this file (default testenv/assets/kernelvm/console.log)")
	quiet := flag.Bool("q", false, "print only the summary, not the tests' output")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o := kernelvm.Options{
		KernelPackage: *kernel, MemoryMiB: *mem, CPUs: *cpus, Timeout: *timeout,
		Output: os.Stdout, ConsoleLog: *console, Logger: log,
	}
	if *quiet {
		o.Output = io.Discard
	}
	for _, p := range pkgs {
		o.Packages = append(o.Packages, kernelvm.Package{Dir: strings.TrimPrefix(p, "./"), Run: *runRe})
	}
	if len(pkgs) == 0 && *runRe != "" {
		fmt.Fprintln(os.Stderr, "kernelmatrix: -run needs -pkg")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	rep, err := kernelvm.Run(ctx, o)
	fmt.Printf("\n=== kernel matrix: %s, %v\n", *kernel, time.Since(start).Round(time.Second))
	if rep != nil {
		rep.Summary(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kernelmatrix: %v\n", err)
		return 1
	}
	if !rep.OK() {
		return 1
	}
	return 0
}
