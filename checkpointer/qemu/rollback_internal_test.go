// SPDX-License-Identifier: Apache-2.0

package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// writePages writes each page at its number (runs coalesced), leaves the
// others alone, and refuses a file of another size.
func TestWritePages(t *testing.T) {
	const pages = 16
	path := filepath.Join(t.TempDir(), "ram")
	orig := bytes.Repeat([]byte{0xee}, pages*PageSize)
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	pfns := []uint64{0, 3, 4, 5, 9, 15}
	data := make([]byte, len(pfns)*PageSize)
	for i := range pfns {
		for b := range PageSize {
			data[i*PageSize+b] = byte(i + 1)
		}
	}
	if err := writePages(path, pages*PageSize, pfns, data); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(orig)
	for i, pfn := range pfns {
		copy(want[pfn*PageSize:], data[i*PageSize:(i+1)*PageSize])
	}
	if !bytes.Equal(got, want) {
		t.Fatal("RAM file differs from the expected pages")
	}
	if err := writePages(path, 2*pages*PageSize, pfns, data); err == nil {
		t.Fatal("a RAM file of another size was written")
	}
}
