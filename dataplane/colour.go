// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"

	"github.com/resilire/resilire/bpf"
	"github.com/resilire/resilire/checkpointer/wire"
)

// VDEchp colours (Lai-Yang). A group member executing round r (between its
// checkpoints r-1 and r) tags every unicast frame to a peer with r mod 4096
// in an 802.1ad tag and passes it without output commit. The receiver,
// at round i, holds a frame of colour c > i until its own round reaches c
// (HoldQueue), and delivers the others untagged; those with c < i were in
// transit for the cut and are logged with their colour.

// colourMask is the part of a round the tag carries (the 12-bit VID).
const colourMask = wire.MaxColour

// Group reports whether the guest-egress program is attached, which a
// VDEchp member needs (Options.Group or Options.InputLog).
func (p *Port) Group() bool { return p.egress != 0 }

// SetRound sets the round this guest executes, its colour: 0 leaves the
// group (no frame is tagged or held). Call it while the guest is paused,
// right after its checkpoint of round r was taken, with r+1, then release
// the held frames (HoldQueue.Release). One aligned store: the programs see
// the old or the new round, never a mix.
func (p *Port) SetRound(r uint32) error {
	if r != 0 && !p.Group() {
		return fmt.Errorf("vm %s: set round %d: %w", p.name, r, ErrNoGroup)
	}
	return p.setConfig(bpf.CaptureSetConfigArg{Round: r, What: bpf.CaptureSetWhatSET_ROUND})
}

// Round returns the round being stamped into internal frames (0: none).
func (p *Port) Round() (uint32, error) {
	c, err := p.config()
	return c.Round, err
}

// SetUnsafeNoHold switches the negative control: when on, frames from a
// peer's later round are delivered at once instead of held, so the
// group's cut can contain orphans. Tests only. The flags word holds no
// other bit, so it is written whole.
func (p *Port) SetUnsafeNoHold(on bool) error {
	var f bpf.CapturePortFlags
	if on {
		f = bpf.CapturePortFlagsPORT_UNSAFE_NO_HOLD
	}
	return p.setConfig(bpf.CaptureSetConfigArg{Flags: f, What: bpf.CaptureSetWhatSET_FLAGS})
}

// UnsafeNoHold reports whether the negative control is on.
func (p *Port) UnsafeNoHold() (bool, error) {
	c, err := p.config()
	return c.Flags&bpf.CapturePortFlagsPORT_UNSAFE_NO_HOLD != 0, err
}

// HoldRing returns the ring of held internal frames; nil unless Group.
func (p *Port) HoldRing() *ebpf.Map { return p.objs.maps[mapHoldRing] }

// SetGroupPeers replaces the set of the other members' MACs (unicast,
// 6 bytes each; at most the map's size). Guest output to them is
// internal; tagged frames from them are coloured. New peers are added
// before old ones are removed, so a frame in between is either coloured
// or held by output commit, never lost.
func (p *Port) SetGroupPeers(macs []net.HardwareAddr) error {
	m := p.objs.maps[mapPeers]
	if m == nil {
		return fmt.Errorf("vm %s: %w", p.name, ErrClosed)
	}
	want := map[bpf.CapturePeerKey]bool{}
	for _, mac := range macs {
		if len(mac) != 6 || mac[0]&1 != 0 {
			return fmt.Errorf("vm %s: group peer %s: want a 6-byte unicast MAC", p.name, mac)
		}
		var k bpf.CapturePeerKey
		copy(k.Mac[:], mac)
		want[k] = true
	}
	if len(want) > int(m.MaxEntries()) {
		return fmt.Errorf("vm %s: %d group peers, at most %d", p.name, len(want), m.MaxEntries())
	}
	have, err := p.peerKeys()
	if err != nil {
		return err
	}
	for k := range want {
		if err := m.Update(&k, uint8(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("vm %s: add group peer %s: %w", p.name, net.HardwareAddr(k.Mac[:]), err)
		}
	}
	for _, k := range have {
		if want[k] {
			continue
		}
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("vm %s: remove group peer %s: %w", p.name, net.HardwareAddr(k.Mac[:]), err)
		}
	}
	return nil
}

// GroupPeers returns the peer MACs, in no particular order.
func (p *Port) GroupPeers() ([]net.HardwareAddr, error) {
	keys, err := p.peerKeys()
	if err != nil {
		return nil, err
	}
	out := make([]net.HardwareAddr, 0, len(keys))
	for _, k := range keys {
		out = append(out, append(net.HardwareAddr(nil), k.Mac[:]...))
	}
	return out, nil
}

func (p *Port) peerKeys() ([]bpf.CapturePeerKey, error) {
	m := p.objs.maps[mapPeers]
	if m == nil {
		return nil, fmt.Errorf("vm %s: %w", p.name, ErrClosed)
	}
	var (
		keys []bpf.CapturePeerKey
		k    bpf.CapturePeerKey
		v    uint8
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("vm %s: read group peers: %w", p.name, err)
	}
	return keys, nil
}
