// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// synth is a small synthetic trace: a full image, then epochs of sparse
// writes, zeroed pages and copied pages over a hot set.
type synth struct {
	mem    []byte
	rng    *rand.Rand
	epochs int
	ep     int
}

func newSynth(pages, epochs int) *synth {
	s := &synth{mem: make([]byte, pages*PageSize), rng: rand.New(rand.NewPCG(5, 6)), epochs: epochs}
	for i := 0; i < len(s.mem)/2; i += 8 {
		binary.LittleEndian.PutUint64(s.mem[i:], s.rng.Uint64()%1000)
	}
	return s
}

func (s *synth) Next() ([]uint64, []byte, error) {
	if s.ep == s.epochs {
		return nil, nil, io.EOF
	}
	pages := uint64(len(s.mem) / PageSize)
	dirty := map[uint64]bool{}
	if s.ep == 0 {
		for p := uint64(0); p < pages; p++ {
			dirty[p] = true
		}
	}
	for k := 0; k < 40; k++ {
		p := s.rng.Uint64N(pages / 4)
		pg := s.mem[p*PageSize : (p+1)*PageSize]
		switch s.rng.IntN(4) {
		case 0:
			clear(pg)
		case 1:
			q := s.rng.Uint64N(pages)
			copy(pg, s.mem[q*PageSize:(q+1)*PageSize])
		default:
			pg[s.rng.IntN(PageSize)]++
		}
		dirty[p] = true
	}
	s.ep++
	var pfns []uint64
	var data []byte
	for p := uint64(0); p < pages; p++ {
		if dirty[p] {
			pfns = append(pfns, p)
			data = append(data, s.mem[p*PageSize:(p+1)*PageSize]...)
		}
	}
	return pfns, data, nil
}

func TestEveryCodecReproducesMemory(t *testing.T) {
	const pages = 512
	codecs, err := StandardCodecs(pages, 64, 2)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run("synth", newSynth(pages, 30), pages, codecs)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	raw := rep.Results[0].Wire
	for _, r := range rep.Results {
		if r.Err != nil || !r.Verified {
			t.Errorf("%s: err %v, verified %v", r.Name, r.Err, r.Verified)
		}
		if r.Wire <= 0 || (r.Name != rep.Results[0].Name && r.Wire >= raw) {
			t.Errorf("%s: %d wire bytes, raw pages take %d", r.Name, r.Wire, raw)
		}
	}
	if !strings.Contains(out.String(), "ratio to (a)") {
		t.Errorf("table header missing:\n%s", out.String())
	}
}

func TestBaselineDecodersRejectGarbage(t *testing.T) {
	replica := make([]byte, 4*PageSize)
	bad := [][]byte{{1, 2, 3}, append(binary.LittleEndian.AppendUint64(nil, 99), make([]byte, PageSize+1)...)}
	for _, c := range []Codec{Raw{}, NewXen(), NewXBZRLE(1 << 20), NewS2(), NewZstd()} {
		for _, b := range bad {
			if err := c.Decode(b, replica); err == nil {
				t.Errorf("%s accepted %d garbage bytes", c.Name(), len(b))
			}
		}
	}
}
