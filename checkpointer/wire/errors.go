// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"errors"
	"fmt"
	"io"
)

// Errors of the wire. Callers test them with errors.Is.
var (
	// ErrFrame: a frame was malformed, unknown, out of place or too large.
	ErrFrame = errors.New("bad frame")
	// ErrTruncated: the stream ended inside a frame or a checkpoint.
	ErrTruncated = errors.New("truncated checkpoint")
	// ErrCorrupt: a checkpoint failed a length, range or checksum check.
	ErrCorrupt = errors.New("corrupt checkpoint")
	// ErrSession: the session hello was refused (wrong VM, size, codec,
	// version), or the session was superseded.
	ErrSession = errors.New("session refused")
	// ErrRefused: the peer closed the session and said why (an ERROR frame).
	ErrRefused = errors.New("refused by peer")
	// ErrNameTooLong: a VM or codec name does not fit the hello.
	ErrNameTooLong = errors.New("name longer than 255 bytes")
)

// TruncatedOnEOF turns an end of stream inside a checkpoint into
// ErrTruncated; other errors pass unchanged.
func TruncatedOnEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	return err
}
