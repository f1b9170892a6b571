// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"log/slog"

	"github.com/resilire/resilire/bpf"
)

// Status is a snapshot of one attached VM's data plane.
type Status struct {
	Name, Port, Tap string
	Path            CapturePath
	Attach          AttachMethod
	Mode            Mode
	Epoch           uint64
	InputLog        bool
	InputLogKind    InputLogKind // kern-ctx or portable when InputLog
	Group           bool         // the guest-egress program is attached (VDEchp member possible)
	Round           uint32       // VDEchp colour; 0: not a group member
	UnsafeNoHold    bool         // negative control: frames from a later round are not held
	Counters        Counters
	// Compatible is false when the pinned programs differ from this build
	// (see ErrIncompatible); the rest is still read from the pinned maps.
	Compatible bool
}

// ReadStatus reads the pinned state of VM name without taking it over.
func ReadStatus(name, pinRoot string) (Status, error) {
	p, err := openPinned(name, pinRoot, nil, false)
	if err != nil {
		return Status{}, err
	}
	defer p.Close()
	s := Status{Name: name, Port: p.PortName(), Tap: p.TapName(), Path: p.Path(), Attach: p.AttachMethod(), InputLog: p.InputLog(),
		InputLogKind: p.InputLogKind()}
	c, err := p.config()
	if err != nil {
		return s, err
	}
	s.Mode, s.Epoch = Mode(c.Mode), c.Epoch
	s.Group, s.Round = p.Group(), c.Round
	s.UnsafeNoHold = c.Flags&bpf.CapturePortFlagsPORT_UNSAFE_NO_HOLD != 0
	if s.Counters, err = p.Counters(); err != nil {
		return s, err
	}
	err = p.checkTags()
	s.Compatible = err == nil
	if errors.Is(err, ErrIncompatible) {
		err = nil
	}
	return s, err
}

// DetachPinned detaches VM name from its pinned state, even if the pinned
// programs come from another build. Call it in the port's netns.
func DetachPinned(name, pinRoot string, log *slog.Logger) error {
	p, err := openPinned(name, pinRoot, log, false)
	if err != nil {
		return err
	}
	return p.Detach()
}
