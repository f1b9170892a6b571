// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// KillPrimaryHost is the death of host-a: SIGKILL of its QEMU and its
// agent, then its cables down. It returns when all three are done; the
// moment of the kill is the returned time.
func (c *Cluster) KillPrimaryHost() (time.Time, error) {
	t := time.Now()
	errs := []error{killPidFile(c.CfgA.PIDPath())}
	if c.protect != nil {
		errs = append(errs, c.protect.Kill())
	}
	errs = append(errs, c.Rig.SetHostLinks(c.Rig.A, false))
	c.logf("host-a killed (QEMU, agent, links)")
	return t, errors.Join(errs...)
}

// KillPrimaryAgent is a crash of the protect agent alone: the guest keeps
// running on host-a, its output held by the pinned data plane (nobody
// releases it), until the backup fences host-a and takes over.
func (c *Cluster) KillPrimaryAgent() error {
	c.logf("protect agent killed (guest left running)")
	return c.protect.Kill()
}

// PartitionReplication cuts the replication link only: both hosts stay on
// the LAN and the primary keeps running until it is fenced.
func (c *Cluster) PartitionReplication() error {
	c.logf("replication link cut")
	return c.Rig.SetReplicationLink(false)
}

// KillBackup is the death of the standby agent and its warm standby QEMU
// (host-b stays on the network).
func (c *Cluster) KillBackup() error {
	var errs []error
	if c.standby != nil {
		errs = append(errs, c.standby.Kill())
	}
	errs = append(errs, killPidFile(c.CfgB.PIDPath()))
	c.logf("backup killed (agent, standby QEMU)")
	return errors.Join(errs...)
}

// RestartBackup starts a fresh standby agent in host-b and waits until the
// primary is protected again (an epoch acknowledged by the new backup,
// which needs a full resynchronisation).
func (c *Cluster) RestartBackup(ctx context.Context) error {
	if err := c.StartStandby(ctx); err != nil {
		return err
	}
	t0 := time.Now()
	err := c.standby.WaitStatus(ctx, 60*time.Second, func(s Status) bool { return s.Epoch > 0 })
	if err != nil {
		return fmt.Errorf("re-protection: %w", err)
	}
	c.logf("re-protected after %v", time.Since(t0).Round(time.Millisecond))
	return nil
}

// WaitFailover waits until the standby agent reports the guest running on
// host-b, at most limit.
func (c *Cluster) WaitFailover(ctx context.Context, limit time.Duration) error {
	return c.standby.WaitStatus(ctx, limit, wentLive)
}

// wentLive reports an agent whose guest runs on its host: state active,
// or (--reprotect-to) the primary it became.
func wentLive(s Status) bool { return s.State == "active" || s.Role == "primary" }
