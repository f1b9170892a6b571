// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"encoding/binary"
	"fmt"
)

// HandoverMsg is the payload of HANDOVER and HANDOVER_ACK: the epoch of
// the checkpoint the guest stopped at (the backup's committed one).
type HandoverMsg struct {
	Epoch uint64
}

// Marshal encodes the message (8 bytes).
func (m HandoverMsg) Marshal() []byte { return binary.LittleEndian.AppendUint64(nil, m.Epoch) }

// ParseHandover decodes a HANDOVER or HANDOVER_ACK payload.
func ParseHandover(p []byte) (HandoverMsg, error) {
	if len(p) != 8 {
		return HandoverMsg{}, fmt.Errorf("handover: %d bytes: %w", len(p), ErrFrame)
	}
	m := HandoverMsg{Epoch: binary.LittleEndian.Uint64(p)}
	if m.Epoch == 0 {
		return m, fmt.Errorf("handover of epoch 0: %w", ErrFrame)
	}
	return m, nil
}
