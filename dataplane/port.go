// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/resilire/resilire/bpf"
)

// FirstEpoch is the epoch a freshly attached port stamps. Epoch 0 is never
// stamped, so "committed 0" means nothing has been committed.
const FirstEpoch = 1

// Port is one guest port with Resilire's programs attached.
type Port struct {
	name     string
	pinDir   string
	pinRoot  string
	portName string
	tapName  string
	path     CapturePath
	attach   AttachMethod
	inputLog InputLogKind // 0 without an input log
	egress   InputLogKind // guest-egress program (input log and/or group); 0 without
	log      *slog.Logger

	objs  *objects
	links map[string]link.Link // tcx only, by program name
	hooks []hook
}

// Counters are the port's counters summed over CPUs.
type Counters struct {
	Captured     uint64 // frames held: copied to the ring (path A) or redirected to the tap (path B)
	Passed       uint64 // frames passed in pass mode
	Injected     uint64 // released frames re-injected through the tap and passed on
	Blocked      uint64 // frames dropped in block mode
	RingFull     uint64 // frames dropped because the capture ring was full (never passed)
	TooBig       uint64 // frames longer than 64 KiB, dropped
	InputLogged  uint64 // frames to the guest copied to the input log
	InputLogFull uint64 // frames to the guest missing from the input log (log broken)
	Errors       uint64 // capture failures (runt frame, read error, tag push/pop failure), dropped

	// VDEchp colours (see SetRound).
	InternalSent     uint64 // frames to a group peer tagged with our round and passed at once
	InternalReceived uint64 // tagged frames from a peer delivered to the guest, untagged
	InTransit        uint64 // of those, frames from a peer's earlier round (logged with their colour)
	Held             uint64 // frames from a peer's later round held in the hold ring (dropped there)
	HoldFull         uint64 // frames to hold that the hold ring could not take: dropped, never delivered
}

// Name returns the VM name.
func (p *Port) Name() string { return p.name }

// PortName returns the guest port's interface name.
func (p *Port) PortName() string { return p.portName }

// TapName returns the injection tap's interface name (same netns as the port).
func (p *Port) TapName() string { return p.tapName }

// Path returns the capture path in use (never PathAuto).
func (p *Port) Path() CapturePath { return p.path }

// AttachMethod returns how the programs are attached (never AttachAuto).
func (p *Port) AttachMethod() AttachMethod { return p.attach }

// PinDir returns the directory holding the pinned state.
func (p *Port) PinDir() string { return p.pinDir }

// CaptureRing returns the path-A ring of held output; nil on path B.
func (p *Port) CaptureRing() *ebpf.Map { return p.objs.maps[mapCapRing] }

// InputLogRing returns the ring of frames to the guest; nil unless the
// input log is attached.
func (p *Port) InputLogRing() *ebpf.Map { return p.objs.maps[mapInputRing] }

// config reads the port's config.
func (p *Port) config() (bpf.CapturePortConfig, error) {
	var c bpf.CapturePortConfig
	m := p.objs.maps[mapConfig]
	if m == nil {
		return c, fmt.Errorf("vm %s: %w", p.name, ErrClosed)
	}
	if err := m.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("read config of %s: %w", p.name, err)
	}
	return c, nil
}

// setConfig writes the epoch and/or mode through the set_config program
// (BPF_PROG_TEST_RUN): one aligned store per field, so the programs never
// read a half-written epoch, and no read-modify-write can lose an update.
func (p *Port) setConfig(arg bpf.CaptureSetConfigArg) error {
	data, err := binary.Append(nil, binary.LittleEndian, &arg)
	if err != nil {
		return err
	}
	prog := p.objs.progs[progSetConfig]
	if prog == nil {
		return fmt.Errorf("vm %s: %w", p.name, ErrClosed)
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: data})
	if err != nil {
		return fmt.Errorf("set config of %s: %w", p.name, err)
	}
	if ret != 0 {
		return fmt.Errorf("set config of %s: program returned %d", p.name, ret)
	}
	return nil
}

// SetMode switches the port between pass, buffer and block.
func (p *Port) SetMode(m Mode) error {
	if _, ok := modeNames[m]; !ok {
		return fmt.Errorf("set mode: invalid %v", m)
	}
	return p.setConfig(bpf.CaptureSetConfigArg{Mode: bpf.CaptureMode(m), What: bpf.CaptureSetWhatSET_MODE})
}

// Mode returns the current mode.
func (p *Port) Mode() (Mode, error) {
	c, err := p.config()
	return Mode(c.Mode), err
}

// SetEpoch sets the epoch stamped into captured frames. Call it while the
// guest is paused so every frame's stamp is exact.
func (p *Port) SetEpoch(e uint64) error {
	return p.setConfig(bpf.CaptureSetConfigArg{Epoch: e, What: bpf.CaptureSetWhatSET_EPOCH})
}

// Epoch returns the epoch being stamped.
func (p *Port) Epoch() (uint64, error) {
	c, err := p.config()
	return c.Epoch, err
}

// InputLog reports whether the input-log program is attached.
func (p *Port) InputLog() bool { return p.inputLog != 0 }

// InputLogKind returns the kind of the attached input log (never
// InputLogAuto), or 0 without one.
func (p *Port) InputLogKind() InputLogKind { return p.inputLog }

// TapQueues returns how many queues netbuf should open on the tap.
func (p *Port) TapQueues() (int, error) {
	c, err := p.config()
	return int(c.TapQueues), err
}

// Counters returns the counters summed over CPUs.
func (p *Port) Counters() (Counters, error) {
	var sums [bpf.CaptureCounterCNT_MAX]uint64
	m := p.objs.maps[mapCounters]
	if m == nil {
		return Counters{}, fmt.Errorf("vm %s: %w", p.name, ErrClosed)
	}
	for i := range sums {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return Counters{}, fmt.Errorf("read counter %d of %s: %w", i, p.name, err)
		}
		for _, v := range per {
			sums[i] += v
		}
	}
	return Counters{
		Captured:     sums[bpf.CaptureCounterCNT_CAPTURED],
		Passed:       sums[bpf.CaptureCounterCNT_PASSED],
		Injected:     sums[bpf.CaptureCounterCNT_INJECTED],
		Blocked:      sums[bpf.CaptureCounterCNT_BLOCKED],
		RingFull:     sums[bpf.CaptureCounterCNT_RING_FULL],
		TooBig:       sums[bpf.CaptureCounterCNT_TOO_BIG],
		InputLogged:  sums[bpf.CaptureCounterCNT_INPUT_LOGGED],
		InputLogFull: sums[bpf.CaptureCounterCNT_INPUT_LOG_FULL],
		Errors:       sums[bpf.CaptureCounterCNT_ERRORS],

		InternalSent:     sums[bpf.CaptureCounterCNT_INTERNAL_SENT],
		InternalReceived: sums[bpf.CaptureCounterCNT_INTERNAL_RECEIVED],
		InTransit:        sums[bpf.CaptureCounterCNT_IN_TRANSIT],
		Held:             sums[bpf.CaptureCounterCNT_HELD],
		HoldFull:         sums[bpf.CaptureCounterCNT_HOLD_FULL],
	}, nil
}

// Injected returns the injected counter alone (see Counters), cheaper
// for netbuf's per-Stats read: one map lookup.
func (p *Port) Injected() (uint64, error) {
	m := p.objs.maps[mapCounters]
	if m == nil {
		return 0, fmt.Errorf("vm %s: %w", p.name, ErrClosed)
	}
	var per []uint64
	if err := m.Lookup(uint32(bpf.CaptureCounterCNT_INJECTED), &per); err != nil {
		return 0, fmt.Errorf("read injected counter of %s: %w", p.name, err)
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	return sum, nil
}

// OpenTapQueue opens one queue of this port's injection tap (see the
// package function). Call it in the port's netns.
func (p *Port) OpenTapQueue() (*os.File, error) {
	return OpenTapQueue(p.tapName)
}

// Close releases this process's file descriptors. The pinned programs stay
// attached and keep holding output (fail closed).
func (p *Port) Close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	if p.objs != nil {
		p.objs.close()
		p.objs = &objects{progs: map[string]*ebpf.Program{}, maps: map[string]*ebpf.Map{}}
	}
	return errors.Join(errs...)
}
