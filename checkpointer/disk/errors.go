// SPDX-License-Identifier: Apache-2.0

package disk

import "errors"

// Errors of the package. Callers test them with errors.Is.
var (
	// ErrProtocol: an NBD peer sent something the protocol does not allow.
	ErrProtocol = errors.New("nbd protocol error")
	// ErrRange: an extent lies outside the image or is misaligned.
	ErrRange = errors.New("extent out of range")
	// ErrSize: an image size is not a positive multiple of BlockSize, or
	// two images differ in size.
	ErrSize = errors.New("bad image size")
	// ErrJournal: the journal is not in the state the call needs (records
	// out of order, commit without stage).
	ErrJournal = errors.New("journal misuse")
	// ErrClosed: the export or replica was closed.
	ErrClosed = errors.New("closed")
)
