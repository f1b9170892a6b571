// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/checkpointer/fgbi"
	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"
)

// Flags shared by `protect` and `standby`.

const defaultMetricsAddr = "127.0.0.1:9470"

func agentVMFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "vm", Usage: "name of the protected VM (must match on both hosts)", Required: true}
}

// maxVMName is the longest --vm: the session hello carries the name's
// length in one byte.
const maxVMName = 255

// checkAgent is the Before hook of protect and standby. Like checkDomain,
// it only reads flags.
func checkAgent(c *ucli.Context) error {
	if n := len(c.String("vm")); n > maxVMName {
		return fmt.Errorf("--vm: %d bytes, at most %d", n, maxVMName)
	}
	return checkDomain(c)
}

func timingFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.DurationFlag{Name: "heartbeat-interval", Value: checkpointer.DefaultHeartbeatInterval, Usage: "how often each side sends a heartbeat"},
		&ucli.DurationFlag{Name: "heartbeat-timeout", Value: checkpointer.DefaultHeartbeatTimeout, Usage: "silence after which the peer is declared lost"},
	}
}

// checkTimings refuses durations that make no sense instead of letting
// them fall back to defaults unnoticed: each named flag must be positive,
// and the heartbeat timeout must exceed the heartbeat interval.
func checkTimings(c *ucli.Context, names ...string) error {
	for _, n := range append(names, "heartbeat-interval", "heartbeat-timeout") {
		if d := c.Duration(n); d <= 0 {
			return fmt.Errorf("--%s %v: must be positive", n, d)
		}
	}
	if hi, ht := c.Duration("heartbeat-interval"), c.Duration("heartbeat-timeout"); ht <= hi {
		return fmt.Errorf("--heartbeat-timeout %v must be longer than --heartbeat-interval %v", ht, hi)
	}
	return nil
}

func codecFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "codec", Value: "fgbi", Usage: "checkpoint codec: fgbi (block diff, sharing, compression) or raw (whole pages); both hosts must agree"},
		&ucli.IntFlag{Name: "block-size", Value: 64, Usage: "fgbi change-detection block in bytes (power of two, 64..4096); both hosts must agree"},
		&ucli.BoolFlag{Name: "no-compression", Usage: "fgbi: no XOR delta or S2 compression"},
		&ucli.IntFlag{Name: "fgbi-cache-mib", Value: fgbi.DefaultXORCacheBytes >> 20, Usage: "fgbi, primary: shadow cache of the guest's hot pages, in MiB of dom0 " +
			"memory per protected VM (exact change detection and XOR deltas for the pages it holds; never more than the guest's RAM); 0 disables it"},
	}
}

func tlsFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "tls-cert", Usage: "PEM certificate of this agent (mutual TLS)"},
		&ucli.StringFlag{Name: "tls-key", Usage: "PEM private key of this agent"},
		&ucli.StringFlag{Name: "tls-ca", Usage: "PEM CA bundle that signs the peer's certificate"},
	}
}

func metricsFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "metrics-addr", Value: defaultMetricsAddr, Usage: "address for /metrics (Prometheus) and /status (JSON); empty disables"}
}

func tlsFiles(c *ucli.Context) wire.TLSFiles {
	return wire.TLSFiles{Cert: c.String("tls-cert"), Key: c.String("tls-key"), CA: c.String("tls-ca"), ServerName: c.String("tls-server-name")}
}

func codecFrom(c *ucli.Context) (codec.Codec, error) {
	switch c.String("codec") {
	case "fgbi":
		mib := c.Int("fgbi-cache-mib")
		if mib < 0 || mib > 1<<20 {
			return nil, fmt.Errorf("--fgbi-cache-mib %d: want 0 (no cache) to 1048576", mib)
		}
		cache := mib << 20
		if mib == 0 {
			cache = -1 // fgbi.Config: negative disables, 0 is the default
		}
		cfg := fgbi.Config{BlockSize: c.Int("block-size"), Sharing: true, Compression: !c.Bool("no-compression"), XORCacheBytes: cache}
		return codec.FGBI{Config: cfg}, nil
	case "raw":
		return codec.Raw{}, nil
	}
	return nil, fmt.Errorf("--codec %q: want fgbi or raw", c.String("codec"))
}

// runAgent runs the agent and, when --metrics-addr is set, its HTTP
// endpoint, until ctx ends or the agent returns.
// switchover, if set, serves POST /switchover there (loopback only).
func runAgent(ctx context.Context, c *ucli.Context, reg *prometheus.Registry, status func() checkpointer.Status,
	switchover func(context.Context) error, log *slog.Logger, agent func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	if addr := c.String("metrics-addr"); addr != "" {
		g.Go(func() error { return checkpointer.ServeAgentHTTP(gctx, addr, reg, status, switchover, nil, log) })
	}
	g.Go(func() error {
		defer cancel()
		return agent(gctx)
	})
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// newRegistry is an agent's metrics registry: its own series plus the Go
// runtime's and the process's (go_memstats_*, process_resident_memory_bytes),
// so that the agent's own memory per VM is scraped beside its speed.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
