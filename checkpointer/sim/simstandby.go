// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"errors"
	"sync"

	"github.com/resilire/resilire/checkpointer"
)

// SimReplica is the backup's copy of a simulated guest: anonymous memory.
type SimReplica struct{ mem []byte }

// NewSimReplica allocates memSize bytes of zeroed replica memory.
func NewSimReplica(memSize uint64) *SimReplica {
	return &SimReplica{mem: make([]byte, memSize/checkpointer.PageSize*checkpointer.PageSize)}
}

// Memory implements checkpointer.Replica.
func (r *SimReplica) Memory() []byte { return r.mem }

// Sync implements checkpointer.Replica; anonymous memory has nothing to flush.
func (r *SimReplica) Sync() error { return nil }

// SimStandby resumes a simulated guest from a replica on failover: the new
// SimDomain shares the replica memory and continues the seeded workload
// from the step saved in the device state.
type SimStandby struct {
	cfg     SimConfig
	replica *SimReplica
	mu      sync.Mutex
	dom     *SimDomain
}

// NewSimStandby prepares a standby over replica; cfg gives the workload
// rate and working set of the resumed guest (seed and step come from the
// checkpoint).
func NewSimStandby(cfg SimConfig, replica *SimReplica) *SimStandby {
	return &SimStandby{cfg: cfg, replica: replica}
}

// Activate implements checkpointer.Standby.
func (s *SimStandby) Activate(_ context.Context, state []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dom != nil {
		return errors.New("sim standby already active")
	}
	d, err := restoreSim(s.cfg, s.replica.mem, state)
	if err != nil {
		return err
	}
	s.dom = d
	d.Start()
	return nil
}

// Close implements checkpointer.Standby: it stops a resumed guest's workload.
func (s *SimStandby) Close() error {
	s.mu.Lock()
	d := s.dom
	s.mu.Unlock()
	if d != nil {
		d.Stop()
	}
	return nil
}
