// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/resilire/resilire/checkpointer"

	"github.com/resilire/resilire/checkpointer/codec"
	"github.com/resilire/resilire/checkpointer/wire"
)

// BenchConfig describes one engine benchmark run: a primary and a backup
// in this process, over loopback TCP, protecting checkpointer.Domain.
type BenchConfig struct {
	Domain   checkpointer.Domain
	Codec    codec.Codec
	Interval time.Duration
	// Epochs measured, after Warmup committed epochs (default 3) that are
	// not (the first carries the end of the initial synchronisation).
	Epochs, Warmup int
	// Pipeline overlaps shipping with the next epoch.
	Pipeline bool
	// AtEnd, if set, runs once the wanted epochs are measured, while both
	// agents still run (a memory benchmark reads their heap there).
	AtEnd func()
}

// BenchResult is what a run measured.
type BenchResult struct {
	Interval   time.Duration
	Epochs     int
	Pauses     []time.Duration // sorted: checkpointer.Domain.Pause called to checkpointer.Domain.Resume returned
	Stopped    []time.Duration // sorted: checkpointer.Domain.Pause returned to checkpointer.Domain.Resume returned
	Stops      []time.Duration // sorted: time inside checkpointer.Domain.Pause
	Acks       []time.Duration // sorted
	Pages      int64
	WireBytes  int64
	Elapsed    time.Duration
	CPU        time.Duration // user+system time of the whole process (both agents)
	SyncTime   time.Duration // from start to the first committed epoch
	FirstEpoch time.Duration // pause of the first consistent checkpoint
}

// Percentile returns the q-quantile (0..1) of sorted durations.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}

type nopStandby struct{}

func (nopStandby) Activate(context.Context, []byte) error { return nil }
func (nopStandby) Close() error                           { return nil }

// RunBench protects cfg.Domain until the wanted epochs are measured.
func RunBench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	if cfg.Warmup == 0 {
		cfg.Warmup = 3
	}
	res := BenchResult{Interval: cfg.Interval}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("bench listen: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b, err := checkpointer.NewBackup(checkpointer.BackupConfig{VM: cfg.Domain.Name(), Replica: NewReplica(cfg.Domain.MemorySize()),
		Standby: nopStandby{}, Codec: cfg.Codec, Listener: ln, HeartbeatTimeout: 10 * time.Second})
	if err != nil {
		return res, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); _ = b.Serve(ctx) }()

	var mu sync.Mutex
	n, start, cpu0 := 0, time.Now(), cpuTime()
	begin := start
	done := make(chan struct{})
	onEpoch := func(st checkpointer.EpochStats) {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch {
		case n == 1:
			res.SyncTime, res.FirstEpoch = time.Since(begin), st.Pause
		case n == cfg.Warmup:
			start, cpu0 = time.Now(), cpuTime()
		case n > cfg.Warmup && n <= cfg.Warmup+cfg.Epochs:
			res.Pauses = append(res.Pauses, st.Pause)
			res.Stopped = append(res.Stopped, st.Pause-st.Stop)
			res.Stops = append(res.Stops, st.Stop)
			res.Acks = append(res.Acks, st.Ack)
			res.Pages += int64(st.Pages)
			res.WireBytes += st.Bytes
			if n == cfg.Warmup+cfg.Epochs {
				res.Elapsed, res.CPU = time.Since(start), cpuTime()-cpu0
				close(done)
			}
		}
	}
	dial, _ := wire.Dialer(ln.Addr().String(), wire.TLSFiles{}, time.Second)
	p, err := checkpointer.NewPrimary(checkpointer.PrimaryConfig{Domain: cfg.Domain, Output: checkpointer.NewEpochCounter(), Codec: cfg.Codec,
		Dial: dial, Interval: cfg.Interval, HeartbeatTimeout: 10 * time.Second, OnEpoch: onEpoch, Pipeline: cfg.Pipeline})
	if err != nil {
		return res, err
	}
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	select {
	case <-done:
		if cfg.AtEnd != nil {
			cfg.AtEnd()
		}
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return res, fmt.Errorf("bench primary: %w", err)
		}
	case err := <-errc:
		return res, fmt.Errorf("bench primary stopped: %w", err)
	}
	res.Epochs = len(res.Pauses)
	slices.Sort(res.Pauses)
	slices.Sort(res.Stopped)
	slices.Sort(res.Stops)
	slices.Sort(res.Acks)
	return res, nil
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
