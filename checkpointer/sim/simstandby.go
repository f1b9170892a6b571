// SPDX-License-Identifier: Apache-2.0

package sim

import (
	"context"
	"errors"
	"sync"

	"github.com/resilire/resilire/checkpointer"
)

// Replica is the backup's copy of a simulated guest: anonymous memory.
type Replica struct{ mem []byte }

// NewReplica allocates memSize bytes of zeroed replica memory.
func NewReplica(memSize uint64) *Replica {
	return &Replica{mem: make([]byte, memSize/checkpointer.PageSize*checkpointer.PageSize)}
}

// Memory implements checkpointer.Replica.
func (r *Replica) Memory() []byte { return r.mem }

// Sync implements checkpointer.Replica; anonymous memory has nothing to flush.
func (r *Replica) Sync() error { return nil }

// Standby resumes a simulated guest from a replica on failover: the new
// Domain shares the replica memory and continues the seeded workload
// from the step saved in the device state.
type Standby struct {
	cfg     Config
	replica *Replica
	mu      sync.Mutex
	dom     *Domain
}

// NewStandby prepares a standby over replica; cfg gives the workload
// rate and working set of the resumed guest (seed and step come from the
// checkpoint).
func NewStandby(cfg Config, replica *Replica) *Standby {
	return &Standby{cfg: cfg, replica: replica}
}

// Activate implements checkpointer.Standby.
func (s *Standby) Activate(_ context.Context, state []byte) error {
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
func (s *Standby) Close() error {
	s.mu.Lock()
	d := s.dom
	s.mu.Unlock()
	if d != nil {
		d.Stop()
	}
	return nil
}
