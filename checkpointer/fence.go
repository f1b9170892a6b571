// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Fencer makes sure the old primary can no longer emit output (power it
// off, cut its port, take a lease) before the backup goes live: invariant
// 5, at most one copy of the VM talks to the world.
type Fencer interface {
	// Fence returns nil only when the old primary is known to be stopped.
	Fence(ctx context.Context, req FenceRequest) error
}

// FenceRequest describes the failover being fenced.
type FenceRequest struct {
	VM     string
	Peer   string // the old primary's address, as last seen or configured
	Epoch  uint64 // the committed epoch the backup will resume from
	Reason string // e.g. "heartbeat-timeout"
}

// CommandFencer runs an operator's command through /bin/sh -c. The
// command must exit 0 within Timeout, or the backup does not go live.
//
// Interface: the command gets the environment of the agent plus
//
//	RESILIRE_VM      the VM name
//	RESILIRE_PEER    the old primary (--peer, else the address it last connected from)
//	RESILIRE_EPOCH   the committed epoch about to be resumed
//	RESILIRE_REASON  why failover started (heartbeat-timeout)
//
// Its stdin is empty; the tail of its stdout and stderr is kept for the
// error and the log.
type CommandFencer struct {
	Command string
	Timeout time.Duration
}

// DefaultFenceTimeout bounds a fence command.
const DefaultFenceTimeout = 30 * time.Second

// Fence implements Fencer.
func (f CommandFencer) Fence(ctx context.Context, req FenceRequest) error {
	timeout := f.Timeout
	if timeout <= 0 {
		timeout = DefaultFenceTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", f.Command)
	cmd.Env = append(os.Environ(),
		"RESILIRE_VM="+req.VM,
		"RESILIRE_PEER="+req.Peer,
		"RESILIRE_EPOCH="+strconv.FormatUint(req.Epoch, 10),
		"RESILIRE_REASON="+req.Reason,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		tail := out.Bytes()
		if len(tail) > 512 {
			tail = tail[len(tail)-512:]
		}
		return fmt.Errorf("%w: %q: %w (output %q)", ErrFenceFailed, f.Command, err, tail)
	}
	return nil
}
