// SPDX-License-Identifier: Apache-2.0

// Package checkpointer replicates a protected VM to a backup host: the epoch
// loop on the primary (pause, harvest, resume, encode, ship, wait for the
// ACK, release held output), the backup that applies each checkpoint
// atomically, heartbeats and failover. Hypervisors are reached through the
// Domain interface; the FGBI codec lives in the fgbi sub-package.
package checkpointer
