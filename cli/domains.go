// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/resilire/resilire/checkpointer"
	ucli "github.com/urfave/cli/v2"
)

// The one place where hypervisor drivers are chosen (--domain). Adding a
// driver means one case in each of openPrimary and openBackup, and its
// flags in domainFlags.

// domainFlags are the flags of every driver.
func domainFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "domain", Value: "sim", Usage: "hypervisor driver: sim (in-process simulated guest); qemu is wired by the integration"},
		&ucli.Uint64Flag{Name: "sim-memory-mib", Value: 64, Usage: "sim: guest memory in MiB"},
		&ucli.Uint64Flag{Name: "sim-seed", Value: 1, Usage: "sim: seed of the write pattern"},
		&ucli.IntFlag{Name: "sim-writes-per-ms", Value: 200, Usage: "sim: 64-byte writes per millisecond"},
		&ucli.Uint64Flag{Name: "sim-hot-pages", Value: 4096, Usage: "sim: working set in pages (0 = all memory)"},
	}
}

func simConfig(c *ucli.Context) checkpointer.SimConfig {
	return checkpointer.SimConfig{Name: c.String("vm"), MemSize: c.Uint64("sim-memory-mib") << 20, Seed: c.Uint64("sim-seed"),
		WritesPerMs: c.Int("sim-writes-per-ms"), HotPages: c.Uint64("sim-hot-pages")}
}

// primaryDriver is what `protect` needs from a driver.
type primaryDriver struct {
	domain checkpointer.Domain
	output checkpointer.OutputCommit
	close  func()
}

// openPrimary opens the protected VM and its output buffer.
func openPrimary(c *ucli.Context, log *slog.Logger) (*primaryDriver, error) {
	switch c.String("domain") {
	case "sim":
		d := checkpointer.NewSimDomain(simConfig(c))
		d.Start()
		log.Warn("simulated guest: it has no network port, so there is no output to hold", "vm", c.String("vm"))
		return &primaryDriver{domain: d, output: checkpointer.NewEpochCounterAt(uint64(time.Now().UnixMilli())), close: d.Stop}, nil
	}
	return nil, fmt.Errorf("--domain %q: not available in this build (sim)", c.String("domain"))
}

// backupDriver is what `standby` needs from a driver.
type backupDriver struct {
	replica checkpointer.Replica
	standby checkpointer.Standby
	port    checkpointer.PortSwitch // nil: no data-plane port to switch
}

// openBackup prepares the replica and the standby VM.
func openBackup(c *ucli.Context, _ *slog.Logger) (*backupDriver, error) {
	switch c.String("domain") {
	case "sim":
		r := checkpointer.NewSimReplica(c.Uint64("sim-memory-mib") << 20)
		return &backupDriver{replica: r, standby: checkpointer.NewSimStandby(simConfig(c), r)}, nil
	}
	return nil, fmt.Errorf("--domain %q: not available in this build (sim)", c.String("domain"))
}
