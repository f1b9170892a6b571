// SPDX-License-Identifier: Apache-2.0

package xen

// MaxBatch is the largest number of frames one PFNTypes call may carry
// (XEN_DOMCTL_getpageframeinfo3 accepts at most 1024), and the default
// number of frames mapped per xenforeignmemory_map call.
const MaxBatch = 1024

// Page types reported by PFNTypes: the XEN_DOMCTL_PFINFO_* values in the top
// four bits of a 32-bit word, as xc_get_pfn_type_batch returns them.
const (
	PageNoTab  uint32 = 0x0 << 28 // ordinary page (HVM guests only have these)
	PageBroken uint32 = 0xd << 28 // broken page, no data
	PageXAlloc uint32 = 0xe << 28 // allocate-only page, no data
	PageXTab   uint32 = 0xf << 28 // not populated: a hole
	PageMask   uint32 = 0xf << 28
)

// pageHasData reports whether a frame of type t holds guest data that a
// migration stream carries (libxc sends data for NOTAB and L1..L4 tables).
func pageHasData(t uint32) bool {
	switch t & PageMask {
	case PageBroken, PageXAlloc, PageXTab:
		return false
	}
	return true
}

// ShutdownSuspend is SHUTDOWN_suspend (public/sched.h): the guest stopped
// itself for a checkpoint.
const ShutdownSuspend = 2

// paramCallbackIRQ is HVM_PARAM_CALLBACK_IRQ: a fast resume only works for
// a guest that set it (libxc then makes its SCHEDOP_shutdown return 1).
const paramCallbackIRQ = 0

// Emulation flags of an x86 domain (XEN_X86_EMU_*, public/arch-x86/xen.h).
const (
	EmuLAPIC uint32 = 1 << 0
	EmuVPCI  uint32 = 1 << 10
)

// DomainInfo is what the driver needs from xc_domain_getinfo and
// xc_domain_nr_gpfns.
type DomainInfo struct {
	ID             uint32
	HVM            bool
	Dying          bool
	Shutdown       bool
	ShutdownReason uint32 // SHUTDOWN_*, when Shutdown
	Paused         bool
	NrPages        uint64 // populated pages now
	MaxMemKB       uint64
	OnlineVCPUs    uint32
	MaxVCPUID      uint32
	EmulationFlags uint32 // XEN_X86_EMU_*: PVH has only LAPIC (and VPCI for dom0)
	NrGPFNs        uint64 // size of the guest physical address space in frames
}

// NeedsDeviceModel reports whether the domain emulates platform devices
// (PIC, IOAPIC, RTC, VGA...), i.e. it is a full HVM guest with QEMU rather
// than PVH.
func (i DomainInfo) NeedsDeviceModel() bool {
	return i.EmulationFlags&^(EmuLAPIC|EmuVPCI) != 0
}

// TSCInfo is xc_domain_get_tsc_info's answer, carried in X86_TSC_INFO.
type TSCInfo struct {
	Mode        uint32
	KHz         uint32
	ElapsedNsec uint64
	Incarnation uint32
}

// Mapping is a batch of guest frames mapped into this process read-only.
type Mapping interface {
	// Bytes is the mapped memory, PageSize bytes per frame in request
	// order. Frames whose per-frame error was non-zero must not be read.
	Bytes() []byte
	// Unmap releases the mapping; Bytes must not be used afterwards.
	Unmap() error
}

// Libxc is the boundary to libxenctrl and libxenforeignmemory. Every method
// returns an *OpError (or an error wrapping one) naming the operation and
// domain. The real implementation (build tag xen) is XC; tests use a fake.
type Libxc interface {
	// XenVersion is the hypervisor's major and minor version (xc_version).
	XenVersion() (major, minor uint16, err error)
	// DomainInfo describes one domain (xc_domain_getinfo for exactly domid,
	// xc_domain_nr_gpfns).
	DomainInfo(domid uint32) (DomainInfo, error)
	// PFNTypes writes the type of each frame of pfns into types
	// (xc_get_pfn_type_batch). len(pfns) <= MaxBatch, len(types) >= len(pfns).
	PFNTypes(domid uint32, pfns []uint64, types []uint32) error
	// EnableLogDirty and DisableLogDirty switch log-dirty mode on and off
	// (xc_shadow_control ENABLE_LOGDIRTY / OFF).
	EnableLogDirty(domid uint32) error
	DisableLogDirty(domid uint32) error
	// CleanDirty copies the log-dirty bitmap of the first nrPages frames into
	// bitmap (bit i of word i/64 = frame i) and clears it in Xen
	// (xc_logdirty_control CLEAN). It returns how many frames Xen covered and
	// how many it counted dirty.
	CleanDirty(domid uint32, bitmap []uint64, nrPages uint64) (covered, dirty uint64, err error)
	// MapFrames maps pfns read-only in one xenforeignmemory_map call and
	// stores each frame's error (0 or an errno) in errs.
	MapFrames(domid uint32, pfns []uint64, errs []int32) (Mapping, error)
	// HVMContext is the domain's HVM save context (xc_domain_hvm_getcontext):
	// vCPU registers, LAPICs, MTRRs, ... Call with the domain paused.
	HVMContext(domid uint32) ([]byte, error)
	// HVMParam reads one HVM parameter (xc_hvm_param_get).
	HVMParam(domid uint32, index uint32) (uint64, error)
	// TSCInfo reads the TSC mode and frequency (xc_domain_get_tsc_info).
	TSCInfo(domid uint32) (TSCInfo, error)
	// StoreRead reads a xenstore node; found is false if it does not exist.
	StoreRead(path string) (value string, found bool, err error)
	// RequestSuspend asks the guest to suspend itself: "suspend" in its
	// control/shutdown node, as libxl's save does.
	RequestSuspend(domid uint32) error
	// CancelSuspend withdraws a request the guest has not acknowledged yet
	// (in a xenstore transaction) and says whether it was still pending.
	CancelSuspend(domid uint32) (withdrawn bool, err error)
	// ResumeFast lets a self-suspended guest run on in place
	// (xc_domain_resume with fast=1, then xs_resume_domain).
	ResumeFast(domid uint32) error
	// Close releases the libxc and foreign-memory handles.
	Close() error
}
