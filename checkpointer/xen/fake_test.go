// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"fmt"
	"syscall"
)

// fakeXC is a test double of the libxc boundary: an in-memory guest with a
// sparse physical address space, a dirty bitmap and a guest that answers
// suspend requests as told. It is not Xen; it only models the contract the
// driver relies on.
type fakeXC struct {
	info      DomainInfo
	populated map[uint64]bool
	mem       map[uint64][]byte // gpfn -> page
	dirty     map[uint64]bool
	reply     suspendReply // how the guest answers a suspend request
	pending   bool         // a request not yet taken
	suspends  int
	resumes   int
	store     map[string]string
	storeHook func(path string) // called by StoreRead before the lookup
	logDirty  bool
	calls     []string
	fail      map[string]syscall.Errno // op -> errno returned once
	mapErrs   map[uint64]int32         // gpfn -> per-frame error
	maps      [][]uint64               // gpfns of each MapFrames call
	unmapped  int
	hvmCtx    []byte
	params    map[uint32]uint64
	covered   uint64 // if non-zero, CleanDirty reports this coverage
}

func newFakeXC(domid uint32, nrGPFNs uint64, populated ...Extent) *fakeXC {
	f := &fakeXC{
		info: DomainInfo{ID: domid, HVM: true, Paused: false, EmulationFlags: EmuLAPIC, NrGPFNs: nrGPFNs,
			OnlineVCPUs: 1},
		populated: map[uint64]bool{}, mem: map[uint64][]byte{}, dirty: map[uint64]bool{},
		fail: map[string]syscall.Errno{}, mapErrs: map[uint64]int32{},
		hvmCtx: []byte("hvm-context-bytes"), params: map[uint32]uint64{0: 0x200000000000f3, 1: 0xfeffc, 17: 0xfeffd, 9: 0},
		store: map[string]string{fmt.Sprintf("/local/domain/%d/control/feature-suspend", domid): "1"},
	}
	for _, e := range populated {
		for p := e.Start; p < e.Start+e.Count; p++ {
			f.populated[p] = true
			page := make([]byte, 4096)
			for i := range page {
				page[i] = byte(p*7 + uint64(i)/512)
			}
			f.mem[p] = page
		}
	}
	return f
}

func (f *fakeXC) op(name string, domid uint32) error {
	f.calls = append(f.calls, name)
	if e, ok := f.fail[name]; ok {
		delete(f.fail, name)
		return NewOpError(name, domid, e)
	}
	if domid != f.info.ID && name != OpVersion {
		return NewOpError(name, domid, syscall.ESRCH)
	}
	return nil
}

// write models the guest writing a page: content changes and, with
// log-dirty on, the frame is marked.
func (f *fakeXC) write(gpfn uint64, b byte) {
	f.mem[gpfn][0] = b
	if f.logDirty {
		f.dirty[gpfn] = true
	}
}

func (f *fakeXC) XenVersion() (uint16, uint16, error) {
	return 4, 17, f.op(OpVersion, f.info.ID)
}

func (f *fakeXC) DomainInfo(domid uint32) (DomainInfo, error) {
	if err := f.op(OpDomainInfo, domid); err != nil {
		return DomainInfo{}, err
	}
	return f.info, nil
}

func (f *fakeXC) PFNTypes(domid uint32, pfns []uint64, types []uint32) error {
	if len(pfns) > MaxBatch {
		return fmt.Errorf("fake: batch of %d frames exceeds %d", len(pfns), MaxBatch)
	}
	if err := f.op(OpPFNTypes, domid); err != nil {
		return err
	}
	for i, p := range pfns {
		types[i] = PageXTab
		if f.populated[p] {
			types[i] = PageNoTab
		}
	}
	return nil
}

// suspendReply is how the fake guest answers a suspend request.
type suspendReply int

const (
	replySuspend suspendReply = iota // suspends at once
	replyIgnore                      // never takes the request (hung)
	replyLate                        // takes it just as the driver withdraws it
	replyCrash                       // shuts down with SHUTDOWN_crash
	replyStuck                       // takes it as the driver withdraws it, never suspends
)

func (f *fakeXC) StoreRead(path string) (string, bool, error) {
	f.calls = append(f.calls, "store read")
	if f.storeHook != nil {
		f.storeHook(path)
	}
	v, ok := f.store[path]
	return v, ok, nil
}

func (f *fakeXC) RequestSuspend(domid uint32) error {
	if err := f.op(OpSuspend, domid); err != nil {
		return err
	}
	switch f.reply {
	case replySuspend:
		f.suspend(ShutdownSuspend)
	case replyCrash:
		f.suspend(3)
	default:
		f.pending = true
	}
	return nil
}

func (f *fakeXC) suspend(reason uint32) {
	f.info.Shutdown, f.info.ShutdownReason = true, reason
	f.suspends++
}

func (f *fakeXC) CancelSuspend(domid uint32) (bool, error) {
	if err := f.op("cancel "+OpSuspend, domid); err != nil {
		return false, err
	}
	if f.reply == replyLate && f.pending {
		f.pending = false
		f.suspend(ShutdownSuspend)
		return false, nil
	}
	withdrawn := f.pending && f.reply != replyStuck
	f.pending = false
	return withdrawn, nil
}

func (f *fakeXC) ResumeFast(domid uint32) error {
	if err := f.op(OpResume, domid); err != nil {
		return err
	}
	if !f.info.Shutdown || f.info.ShutdownReason != ShutdownSuspend {
		return NewOpError(OpResume, domid, syscall.EINVAL)
	}
	f.info.Shutdown, f.info.ShutdownReason = false, 0
	f.resumes++
	return nil
}

func (f *fakeXC) EnableLogDirty(domid uint32) error {
	if err := f.op(OpEnableDirty, domid); err != nil {
		return err
	}
	if f.logDirty {
		return NewOpError(OpEnableDirty, domid, syscall.EBUSY)
	}
	f.logDirty = true
	return nil
}

func (f *fakeXC) DisableLogDirty(domid uint32) error {
	if err := f.op(OpDisableDirty, domid); err != nil {
		return err
	}
	f.logDirty = false
	return nil
}

func (f *fakeXC) CleanDirty(domid uint32, bitmap []uint64, nrPages uint64) (uint64, uint64, error) {
	if err := f.op(OpCleanDirty, domid); err != nil {
		return 0, 0, err
	}
	if !f.logDirty {
		return 0, 0, NewOpError(OpCleanDirty, domid, syscall.EINVAL)
	}
	var n uint64
	for p := range f.dirty {
		if p < nrPages {
			bitmap[p/64] |= 1 << (p % 64)
			n++
		}
	}
	clear(f.dirty)
	covered := nrPages
	if f.covered != 0 {
		covered = f.covered
	}
	return covered, n, nil
}

type fakeMapping struct {
	f *fakeXC
	b []byte
}

func (m *fakeMapping) Bytes() []byte { return m.b }
func (m *fakeMapping) Unmap() error {
	m.b = nil
	m.f.unmapped++
	return m.f.op(OpUnmapFrames, m.f.info.ID)
}

func (f *fakeXC) MapFrames(domid uint32, pfns []uint64, errs []int32) (Mapping, error) {
	if err := f.op(OpMapFrames, domid); err != nil {
		return nil, err
	}
	f.maps = append(f.maps, append([]uint64(nil), pfns...))
	b := make([]byte, len(pfns)*4096)
	for i, p := range pfns {
		if e, ok := f.mapErrs[p]; ok {
			errs[i] = e
			continue
		}
		if !f.populated[p] {
			errs[i] = -int32(syscall.ENOENT)
			continue
		}
		copy(b[i*4096:], f.mem[p])
	}
	return &fakeMapping{f: f, b: b}, nil
}

func (f *fakeXC) HVMContext(domid uint32) ([]byte, error) {
	if err := f.op(OpHVMContext, domid); err != nil {
		return nil, err
	}
	if !f.info.Shutdown {
		return nil, fmt.Errorf("fake: hvm context read from a running domain")
	}
	return append([]byte(nil), f.hvmCtx...), nil
}

func (f *fakeXC) HVMParam(domid uint32, index uint32) (uint64, error) {
	if err := f.op(OpHVMParam, domid); err != nil {
		return 0, err
	}
	return f.params[index], nil
}

func (f *fakeXC) TSCInfo(domid uint32) (TSCInfo, error) {
	if err := f.op(OpTSCInfo, domid); err != nil {
		return TSCInfo{}, err
	}
	return TSCInfo{Mode: 0, KHz: 2400000, ElapsedNsec: 12345, Incarnation: 3}, nil
}

func (f *fakeXC) Close() error { return nil }
