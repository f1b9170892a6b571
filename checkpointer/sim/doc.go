// SPDX-License-Identifier: Apache-2.0

// Package sim holds the simulated guests the engine is tested and measured
// with: Domain (a seeded workload of 64-byte writes over a working set, its
// Replica and a Standby that resumes the workload from a checkpoint),
// ReplayDomain (a recorded dirty-memory trace replayed epoch by epoch), and
// RunBench, the harness behind `resilire bench engine` (a primary and a
// backup in one process over loopback TCP). Nothing here protects a real VM:
// the agents accept --domain sim only with the hidden --unsafe-allow-sim.
package sim
