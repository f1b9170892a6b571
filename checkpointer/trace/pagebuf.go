// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// pagebuf is a growable buffer in anonymous memory outside the Go heap:
// the recorder keeps a copy of the whole traced process, which the garbage
// collector need not see, untouched pages cost no memory, and the race
// detector does not shadow it (recording a race-built helper stays fast).
type pagebuf struct{ b []byte }

// grow makes the buffer at least n bytes long, keeping its content.
func (p *pagebuf) grow(n int) error {
	if n <= len(p.b) {
		return nil
	}
	n = max(n, 2*len(p.b))
	nb, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("page buffer of %d bytes: %w", n, err)
	}
	copy(nb, p.b)
	p.free()
	p.b = nb
	return nil
}

func (p *pagebuf) free() {
	if p.b != nil {
		_ = unix.Munmap(p.b)
		p.b = nil
	}
}
