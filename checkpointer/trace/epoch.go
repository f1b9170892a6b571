// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// readChunk is the size of one pread of /proc/PID/mem.
const readChunk = 1 << 20

// recorder holds the state kept between epochs: the flat space and the
// content of every page as of the previous epoch.
type recorder struct {
	pid   int
	mem   *os.File // /proc/PID/mem
	fr    freezer
	space space
	cur   pagebuf // this epoch's reads, indexed by PFN
	prev  pagebuf // every page as last recorded, indexed by PFN
	// resumed is when the process was last resumed.
	resumed time.Time
}

// close releases the buffers.
func (r *recorder) close() {
	r.cur.free()
	r.prev.free()
}

// epoch pauses the process, reads its writable memory, resumes it and
// returns the pages that changed (every page of a slot new in this epoch).
// data is the caller's to free.
func (r *recorder) epoch(seq int) (pfns []uint64, data *pagebuf, pause time.Duration, err error) {
	t0 := time.Now()
	if err := r.fr.freeze(); err != nil {
		return nil, nil, 0, err
	}
	read, err := r.readFrozen(seq)
	pause = time.Since(t0)
	if terr := r.fr.thaw(); terr != nil && !errors.Is(terr, errExited) && err == nil {
		err = terr
	}
	r.resumed = time.Now()
	if err != nil {
		return nil, nil, pause, err
	}
	for _, rn := range read {
		for i := range rn.npages {
			p := rn.pfn + i
			page := r.cur.b[p*PageSize : (p+1)*PageSize]
			if rn.fresh || !bytes.Equal(page, r.prev.b[p*PageSize:(p+1)*PageSize]) {
				pfns = append(pfns, p)
			}
		}
	}
	slices.Sort(pfns)
	data = new(pagebuf)
	if err := data.grow(len(pfns) * PageSize); err != nil {
		return nil, nil, pause, err
	}
	for i, p := range pfns {
		src := r.cur.b[p*PageSize : (p+1)*PageSize]
		copy(data.b[i*PageSize:], src)
		copy(r.prev.b[p*PageSize:], src)
	}
	return pfns, data, pause, nil
}

// readFrozen lays out the current mappings and reads them into r.cur; it
// returns the runs actually read (unreadable pages left out).
func (r *recorder) readFrozen(seq int) ([]run, error) {
	vmas, err := writableMappings(r.pid)
	if err != nil {
		if _, serr := os.Stat(fmt.Sprintf("/proc/%d", r.pid)); serr != nil {
			return nil, errExited
		}
		return nil, err
	}
	runs, err := r.space.place(vmas, seq)
	if err != nil {
		return nil, err
	}
	for _, b := range []*pagebuf{&r.prev, &r.cur} {
		if err := b.grow(int(r.space.pages * PageSize)); err != nil {
			return nil, err
		}
	}
	var read []run
	for _, rn := range runs {
		read = r.readRun(rn, read)
	}
	return read, nil
}

// readRun reads rn in chunks; a chunk that fails is retried page by page,
// and the pages that still fail ([vvar]-like or device mappings, file
// mappings past EOF) are skipped. It appends the readable sub-runs to out.
func (r *recorder) readRun(rn run, out []run) []run {
	if rn.addr+rn.npages*PageSize > math.MaxInt64 {
		return out
	}
	for done := uint64(0); done < rn.npages; {
		n := min(rn.npages-done, readChunk/PageSize)
		sub := run{addr: rn.addr + done*PageSize, pfn: rn.pfn + done, npages: n, fresh: rn.fresh}
		buf := r.cur.b[sub.pfn*PageSize : (sub.pfn+n)*PageSize]
		got, err := r.pread(buf, sub.addr)
		if err == nil {
			out = appendRun(out, sub)
		} else {
			ok := uint64(got) / PageSize
			if ok > 0 {
				out = appendRun(out, run{addr: sub.addr, pfn: sub.pfn, npages: ok, fresh: rn.fresh})
			}
			for i := ok; i < n; i++ {
				if _, err := r.pread(buf[i*PageSize:(i+1)*PageSize], sub.addr+i*PageSize); err == nil {
					out = appendRun(out, run{addr: sub.addr + i*PageSize, pfn: sub.pfn + i, npages: 1, fresh: rn.fresh})
				}
			}
		}
		done += n
	}
	return out
}

// pread fills b from address addr of the process. It tries
// process_vm_readv(2) first (about 1.6x faster than reading /proc/PID/mem
// here, as it skips the file layer) and falls back to pread(2) of
// /proc/PID/mem for what it could not read (/proc/PID/mem also reads
// pages without read permission). Both are called directly:
// os.File.ReadAt would annotate every byte under the race detector, which
// makes recording a race-built test helper take minutes.
func (r *recorder) pread(b []byte, addr uint64) (int, error) {
	done := 0
	for done < len(b) {
		local := []unix.Iovec{{Base: &b[done], Len: uint64(len(b) - done)}}
		remote := []unix.RemoteIovec{{Base: uintptr(addr) + uintptr(done), Len: len(b) - done}}
		n, err := unix.ProcessVMReadv(r.pid, local, remote, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		done += n
	}
	for done < len(b) {
		n, err := unix.Pread(int(r.mem.Fd()), b[done:], int64(addr)+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrUnexpectedEOF
		}
		done += n
	}
	return len(b), nil
}

// appendRun appends rn, merging it with the last run when contiguous.
func appendRun(out []run, rn run) []run {
	if k := len(out) - 1; k >= 0 && out[k].fresh == rn.fresh &&
		out[k].pfn+out[k].npages == rn.pfn && out[k].addr+out[k].npages*PageSize == rn.addr {
		out[k].npages += rn.npages
		return out
	}
	return append(out, rn)
}
