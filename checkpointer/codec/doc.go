// SPDX-License-Identifier: Apache-2.0

// Package codec is the engine's view of a checkpoint codec: the Encoder,
// Decoder and Staged interfaces the epoch loop and the backup use, the
// adapter to the FGBI codec (package fgbi) and Raw, a plain page codec kept
// for tests and as a reference. A decoder verifies a whole checkpoint
// before anything touches the replica; only Staged.Apply writes to it.
package codec
