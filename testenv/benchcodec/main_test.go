// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/resilire/resilire/checkpointer/trace"
)

// writeTrace records a tiny synthetic trace: a full image of 64 pages, then
// epochs that bump one counter per page on a few pages.
func writeTrace(t *testing.T, dir string) {
	t.Helper()
	w, err := trace.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	mem := make([]byte, 64*trace.PageSize)
	for i := range mem {
		mem[i] = byte(i / 7)
	}
	all := make([]uint64, 64)
	for i := range all {
		all[i] = uint64(i)
	}
	if err := w.WriteEpoch(all, mem); err != nil {
		t.Fatal(err)
	}
	for ep := 1; ep < 6; ep++ {
		pfns := []uint64{1, 5, uint64(10 + ep)}
		var data []byte
		for _, p := range pfns {
			mem[p*trace.PageSize+uint64(ep*8)]++
			data = append(data, mem[p*trace.PageSize:(p+1)*trace.PageSize]...)
		}
		if err := w.WriteEpoch(pfns, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(trace.Meta{Name: "tiny", IntervalMS: 50, Pages: 64, Epochs: 6}); err != nil {
		t.Fatal(err)
	}
}

func TestBenchCodec(t *testing.T) {
	dir := t.TempDir()
	writeTrace(t, dir)
	var out, errb bytes.Buffer
	if code := run([]string{"--trace", dir, "--block", "128", "--repeat", "2"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{"trace tiny", "5 measured epochs", "(a) remus raw pages", "(c) xbzrle", "(e) fgbi 128 B: + compression", "best of 2 runs"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, " NO ") || strings.Contains(s, "error") {
		t.Errorf("a codec failed verification:\n%s", s)
	}
}

func TestBenchCodecBadBlock(t *testing.T) {
	dir := t.TempDir()
	writeTrace(t, dir)
	var out, errb bytes.Buffer
	if code := run([]string{"--trace", dir, "--block", "100"}, &out, &errb); code == 0 {
		t.Fatal("block size 100 accepted")
	}
}
