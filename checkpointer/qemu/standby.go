// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"context"
	"errors"

	"github.com/resilire/resilire/checkpointer"
)

// Standby is a warm standby QEMU: started in advance with "-incoming
// defer -S" on the replica's RAM file, migration capabilities already set,
// waiting for the device state. Failover is then a migrate-incoming from
// memory plus cont: milliseconds, no process start.
type Standby struct {
	vm        *VM
	activated bool
}

var _ checkpointer.Standby = (*Standby)(nil)

// StartStandby launches the standby. cfg must equal the primary's Config
// in every machine field (see Config.ForHost) and cfg.MemPath must be the
// replica's file.
func StartStandby(ctx context.Context, cfg Config) (*Standby, error) {
	vm, err := Start(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	return &Standby{vm: vm}, nil
}

// VM is the standby QEMU; after Activate it is the running guest.
func (s *Standby) VM() *VM { return s.vm }

// Activate restores state (a blob from Domain.SaveState) over the replica
// RAM and starts the guest. It may be called once.
func (s *Standby) Activate(ctx context.Context, state []byte) error {
	if s.activated {
		return errors.New("qemu: standby already activated")
	}
	s.activated = true
	if err := restoreState(ctx, s.vm.mon, state); err != nil {
		return err
	}
	_, err := s.vm.mon.run(ctx, "cont", nil)
	return err
}

// Close kills a standby that was never activated. An activated standby is
// the live guest and is left running; manage it through VM.
func (s *Standby) Close() error {
	if s.activated {
		return nil
	}
	return s.vm.Kill()
}
