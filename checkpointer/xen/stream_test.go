// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// testReplica builds a small replica: 3 populated runs, 1261 frames in all, so one
// run spans two PAGE_DATA records. The HVM context is opaque bytes here; on
// a real host it comes from xc_domain_hvm_getcontext and is passed through.
func testReplica(t testing.TB) ([]byte, *State) {
	t.Helper()
	st := &State{
		XenMajor: 4, XenMinor: 17,
		Extents:    []Extent{{0, 0x9f}, {0x100, 1100}, {0xfeffc, 2}},
		TSC:        TSCInfo{Mode: 0, KHz: 2400000, ElapsedNsec: 1e9, Incarnation: 1},
		Params:     []HVMParam{{1, 0xfeffc}, {17, 0xfeffd}},
		HVMContext: bytes.Repeat([]byte{0x5a}, 1234), // not a multiple of 8: exercises padding
	}
	l, err := NewLayout(st.Extents)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, l.Pages()*4096)
	for i := range mem {
		mem[i] = byte(i / 4096)
	}
	return mem, st
}

type record struct {
	typ  uint32
	body []byte
}

// parseLibxc walks a libxc stream: the test's own reading of the spec,
// independent of the writer's code.
func parseLibxc(t *testing.T, b []byte) []record {
	t.Helper()
	if len(b) < 40 || binary.BigEndian.Uint64(b) != ihdrMarker || string(b[8:12]) != "XENF" ||
		binary.BigEndian.Uint32(b[12:]) != 2 || binary.LittleEndian.Uint32(b[24:]) != 2 ||
		binary.LittleEndian.Uint16(b[28:]) != 12 {
		t.Fatalf("bad headers % x", b[:min(len(b), 40)])
	}
	b = b[40:]
	var recs []record
	for {
		if len(b) < 8 {
			t.Fatalf("truncated record header")
		}
		typ, n := binary.LittleEndian.Uint32(b), int(binary.LittleEndian.Uint32(b[4:]))
		padded := (n + 7) &^ 7
		if len(b) < 8+padded {
			t.Fatalf("record %#x truncated", typ)
		}
		if pad := b[8+n : 8+padded]; !bytes.Equal(pad, make([]byte, len(pad))) {
			t.Fatalf("record %#x: non-zero padding", typ)
		}
		recs = append(recs, record{typ, b[8 : 8+n]})
		b = b[8+padded:]
		if typ == recEnd {
			if len(b) != 0 {
				t.Fatalf("%d bytes after END", len(b))
			}
			return recs
		}
	}
}

func TestWriteLibxcStream(t *testing.T) {
	mem, st := testReplica(t)
	var buf bytes.Buffer
	if err := WriteLibxcStream(&buf, mem, st); err != nil {
		t.Fatal(err)
	}
	recs := parseLibxc(t, buf.Bytes())
	var types []uint32
	var gpfns []uint64
	var data []byte
	for _, r := range recs {
		types = append(types, r.typ)
		if r.typ != recPageData {
			continue
		}
		n := int(binary.LittleEndian.Uint32(r.body))
		if n > pagesPerRecord || len(r.body) != 8+8*n+4096*n {
			t.Fatalf("page data record of %d frames is %d bytes", n, len(r.body))
		}
		for i := 0; i < n; i++ {
			gpfns = append(gpfns, binary.LittleEndian.Uint64(r.body[8+8*i:]))
		}
		data = append(data, r.body[8+8*n:]...)
	}
	want := []uint32{recPageData, recPageData, recPageData, recPageData, recTSCInfo, recHVMContext, recHVMParams, recEnd}
	if !slices.Equal(types, want) {
		t.Fatalf("record types %v, want %v", types, want)
	}
	if len(gpfns) != 0x9f+1100+2 || gpfns[0x9f] != 0x100 || gpfns[len(gpfns)-1] != 0xfeffd {
		t.Fatalf("pfns: %d, [0x9f]=%#x, last=%#x", len(gpfns), gpfns[0x9f], gpfns[len(gpfns)-1])
	}
	if !bytes.Equal(data, mem) {
		t.Fatal("page data differs from the replica")
	}
	if ctx := recs[len(recs)-3].body; !bytes.Equal(ctx, st.HVMContext) {
		t.Fatal("hvm context not passed through")
	}
}

func TestWriteLibxcStreamRejects(t *testing.T) {
	mem, st := testReplica(t)
	var buf bytes.Buffer
	if err := WriteLibxcStream(&buf, mem[:len(mem)-4096], st); err == nil {
		t.Fatal("short replica accepted")
	}
	bad := *st
	bad.HVMContext = nil
	if err := WriteLibxcStream(&buf, mem, &bad); err == nil {
		t.Fatal("empty hvm context accepted")
	}
	bad = *st
	bad.Extents = []Extent{{10, 5}, {12, 5}}
	if err := WriteLibxcStream(&buf, mem, &bad); err == nil {
		t.Fatal("overlapping memory map accepted")
	}
}

func TestXLImageHeader(t *testing.T) {
	mem, st := testReplica(t)
	var buf bytes.Buffer
	cfg := []byte(`{"c_info":{"name":"guest"}}`)
	if err := WriteXLImage(&buf, mem, st, cfg); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if string(b[:32]) != xlMagic || binary.LittleEndian.Uint32(b[32:]) != 0x01020304 ||
		binary.LittleEndian.Uint32(b[36:]) != xlFlagJSON|xlFlagStreamV2 {
		t.Fatalf("xl header % x", b[:48])
	}
	optLen := binary.LittleEndian.Uint32(b[44:])
	cfgLen := binary.LittleEndian.Uint32(b[48:])
	if optLen != 4+cfgLen || string(b[52:52+cfgLen]) != string(cfg)+"\x00" {
		t.Fatalf("optional data %d/%d %q", optLen, cfgLen, b[52:52+cfgLen])
	}
	libxl := b[48+optLen:]
	if string(libxl[:8]) != "LibxlFmt" || binary.BigEndian.Uint32(libxl[8:]) != 2 ||
		binary.LittleEndian.Uint32(libxl[16:]) != libxlRecLibxcCtx {
		t.Fatalf("libxl header % x", libxl[:24])
	}
	tail := libxl[len(libxl)-8:]
	if !bytes.Equal(tail, make([]byte, 8)) {
		t.Fatalf("libxl END record missing: % x", tail)
	}
	parseLibxc(t, libxl[24:len(libxl)-8])
}
