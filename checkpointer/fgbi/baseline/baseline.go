// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/resilire/resilire/checkpointer/fgbi"
)

// PageSize is the guest page size.
const PageSize = fgbi.PageSize

// ErrCorrupt reports a stream a baseline decoder cannot parse.
var ErrCorrupt = errors.New("corrupt baseline stream")

// Codec is one checkpoint encoding under test. Encode appends one epoch's
// checkpoint to dst; Decode applies such a checkpoint to replica.
type Codec interface {
	Name() string
	Encode(dst []byte, pfns []uint64, data []byte) ([]byte, error)
	Decode(src []byte, replica []byte) error
}

// Raw is (a), Remus: page number and page, for every dirty page.
type Raw struct{}

// Name implements Codec.
func (Raw) Name() string { return "(a) remus raw pages" }

// Encode implements Codec.
func (Raw) Encode(dst []byte, pfns []uint64, data []byte) ([]byte, error) {
	for i, p := range pfns {
		dst = binary.LittleEndian.AppendUint64(dst, p)
		dst = append(dst, data[i*PageSize:(i+1)*PageSize]...)
	}
	return dst, nil
}

// Decode implements Codec.
func (Raw) Decode(src []byte, replica []byte) error {
	for len(src) > 0 {
		if len(src) < 8+PageSize {
			return fmt.Errorf("raw page: %w", ErrCorrupt)
		}
		off, err := pageOff(binary.LittleEndian.Uint64(src), replica)
		if err != nil {
			return err
		}
		copy(replica[off:off+PageSize], src[8:8+PageSize])
		src = src[8+PageSize:]
	}
	return nil
}

func pageOff(pfn uint64, replica []byte) (uint64, error) {
	if pfn >= uint64(len(replica)/PageSize) {
		return 0, fmt.Errorf("page %d: %w", pfn, ErrCorrupt)
	}
	return pfn * PageSize, nil
}

// FGBI is (e): the real codec behind the Codec interface.
type FGBI struct {
	Label string
	Stats fgbi.Stats // sums over every epoch encoded
	enc   *fgbi.Encoder
	dec   *fgbi.Decoder
	epoch uint64
}

// NewFGBI returns an FGBI codec for cfg labelled label.
func NewFGBI(label string, cfg fgbi.Config) (*FGBI, error) {
	enc, err := fgbi.NewEncoder(cfg)
	if err != nil {
		return nil, err
	}
	dec, err := fgbi.NewDecoder(cfg)
	if err != nil {
		return nil, err
	}
	return &FGBI{Label: label, enc: enc, dec: dec}, nil
}

// Name implements Codec.
func (f *FGBI) Name() string { return f.Label }

// Encode implements Codec.
func (f *FGBI) Encode(dst []byte, pfns []uint64, data []byte) ([]byte, error) {
	w := bytes.NewBuffer(dst)
	f.epoch++
	st, err := f.enc.Encode(w, f.epoch, pfns, data, nil)
	f.Stats.Pages += st.Pages
	f.Stats.SentPages += st.SentPages
	f.Stats.ChangedBlocks += st.ChangedBlocks
	f.Stats.ZeroBlocks += st.ZeroBlocks
	f.Stats.SharedBlocks += st.SharedBlocks
	f.Stats.DeltaBlocks += st.DeltaBlocks
	f.Stats.LiteralBytes += st.LiteralBytes
	f.Stats.WireBytes += st.WireBytes
	return w.Bytes(), err
}

// Decode implements Codec (decode, verify, then apply).
func (f *FGBI) Decode(src []byte, replica []byte) error {
	s, err := f.dec.Decode(bytes.NewReader(src), replica)
	if err != nil {
		return err
	}
	s.Apply(replica)
	return nil
}
