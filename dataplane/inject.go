// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"fmt"
	"log/slog"

	"github.com/resilire/resilire/dataplane/packet"
)

// Injector sends frames toward the guest on its port: what is transmitted
// on a tap (or a Xen vif) goes to its reader, the guest. It replays the
// input log after a failover (checkpointer.InputInjector).
type Injector struct {
	// Iface is the guest's port.
	Iface string
	// Logger gets a warning for frames the port refused; nil: discard.
	Logger *slog.Logger
}

// Inject sends frames in order and returns how many were sent. A frame the
// device refuses (a GSO super-packet over the MTU) is skipped and counted.
func (j Injector) Inject(frames [][]byte) (int, error) {
	s, err := packet.Open(j.Iface, false)
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	defer s.Close()
	sent, skipped := 0, 0
	for _, f := range frames {
		if err := s.Send(f); err != nil {
			skipped++
			continue
		}
		sent++
	}
	if skipped > 0 && j.Logger != nil {
		j.Logger.Warn("input replay skipped frames the port refused", "iface", j.Iface, "frames", skipped)
	}
	return sent, nil
}
