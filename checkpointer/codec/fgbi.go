// SPDX-License-Identifier: Apache-2.0

package codec

import (
	"fmt"
	"io"

	"github.com/resilire/resilire/checkpointer/fgbi"
)

// FGBI is the production codec: fine-grained block identification,
// sharing and hybrid compression (package fgbi). Config.MemSize is filled
// in from the guest.
type FGBI struct {
	Config fgbi.Config
}

// DefaultFGBI is the codec the agents use unless told otherwise: 64-byte
// blocks, sharing and compression on, default cache and workers.
func DefaultFGBI() FGBI {
	return FGBI{Config: fgbi.Config{BlockSize: 64, Sharing: true, Compression: true}}
}

// Name implements Codec. The block size is part of it: both ends must agree.
func (c FGBI) Name() string {
	bs := c.Config.BlockSize
	if bs == 0 {
		bs = 64
	}
	return fmt.Sprintf("fgbi-b%d", bs)
}

func (c FGBI) config(memSize uint64) fgbi.Config {
	cfg := c.Config
	cfg.MemSize = memSize
	return cfg
}

// EncoderMemory is what an encoder for a guest of memSize bytes keeps
// (fgbi.MemoryOverhead: fingerprints, flags, shadow cache, index); 0 for
// an invalid config, which NewEncoder reports.
func (c FGBI) EncoderMemory(memSize uint64) uint64 {
	per, fixed, err := fgbi.MemoryOverhead(c.config(memSize))
	if err != nil {
		return 0
	}
	return per + fixed
}

// NewEncoder implements Codec.
func (c FGBI) NewEncoder(memSize uint64) (Encoder, error) {
	e, err := fgbi.NewEncoder(c.config(memSize))
	if err != nil {
		return nil, fmt.Errorf("fgbi encoder: %w", err)
	}
	return fgbiEncoder{e}, nil
}

// NewDecoder implements Codec.
func (c FGBI) NewDecoder(memSize uint64) (Decoder, error) {
	d, err := fgbi.NewDecoder(c.config(memSize))
	if err != nil {
		return nil, fmt.Errorf("fgbi decoder: %w", err)
	}
	return fgbiDecoder{d}, nil
}

type fgbiEncoder struct{ e *fgbi.Encoder }

func (f fgbiEncoder) Encode(w io.Writer, epoch uint64, pfns []uint64, data, state []byte) (EncodeStats, error) {
	st, err := f.e.Encode(w, epoch, pfns, data, state)
	return EncodeStats{Pages: st.Pages, WireBytes: st.WireBytes}, err
}

func (f fgbiEncoder) Reset() { f.e.Reset() }

type fgbiDecoder struct{ d *fgbi.Decoder }

func (f fgbiDecoder) Decode(r io.Reader, replica []byte) (Staged, error) {
	s, err := f.d.Decode(r, replica)
	if err != nil {
		return nil, err
	}
	return s, nil
}
