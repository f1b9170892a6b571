// SPDX-License-Identifier: Apache-2.0

//go:build xen

package xen

/*
#cgo LDFLAGS: -lxenctrl -lxenforeignmemory -lxentoollog -lxenguest -lxenstore
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#include <xenstore.h>
#include <xentoollog.h>

// Exported by libxenctrl (VERS_4.17.0) but declared only in its private
// header; libxc's own save code uses it to find a guest's populated frames.
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

// Every helper returns 0 or a negative errno, so Go never reads errno
// after a second libc call could have changed it.

struct rsl_info {
	uint32_t domid;
	int hvm, dying, shutdown, paused;
	uint32_t shutdown_reason;
	uint64_t nr_pages, max_memkb, nr_gpfns;
	uint32_t online_vcpus, max_vcpu_id, emulation_flags;
};

// The libraries' own logging is limited to critical messages: every
// failure reaches Go as an errno and is reported there, once.
static int rsl_open(xc_interface **xch, xenforeignmemory_handle **fmem,
                    xentoollog_logger **lg) {
	int e;
	*lg = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_CRITICAL, 0);
	if (!*lg) return -ENOMEM;
	*xch = xc_interface_open(*lg, *lg, 0);
	if (!*xch) {
		e = errno ? errno : ENOENT;
		xtl_logger_destroy(*lg);
		return -e;
	}
	*fmem = xenforeignmemory_open(*lg, 0);
	if (!*fmem) {
		e = errno ? errno : ENOENT;
		xc_interface_close(*xch);
		xtl_logger_destroy(*lg);
		return -e;
	}
	return 0;
}

static int rsl_version(xc_interface *xch, uint32_t *ver) {
	int v = xc_version(xch, XENVER_version, NULL);
	if (v < 0) return -errno;
	*ver = (uint32_t)v;
	return 0;
}

static int rsl_domain_info(xc_interface *xch, uint32_t domid, struct rsl_info *out) {
	xc_dominfo_t info;
	xen_pfn_t gpfns = 0;
	// xc_domain_getinfo returns the next domain at or after domid: check it.
	int n = xc_domain_getinfo(xch, domid, 1, &info);
	if (n < 0) return -errno;
	if (n == 0 || info.domid != domid) return -ESRCH;
	if (xc_domain_nr_gpfns(xch, domid, &gpfns) < 0) return -errno;
	memset(out, 0, sizeof(*out));
	out->domid = info.domid;
	out->hvm = info.hvm;
	out->dying = info.dying;
	out->shutdown = info.shutdown;
	out->paused = info.paused;
	out->shutdown_reason = info.shutdown_reason;
	out->nr_pages = info.nr_pages;
	out->max_memkb = info.max_memkb;
	out->nr_gpfns = gpfns;
	out->online_vcpus = info.nr_online_vcpus;
	out->max_vcpu_id = info.max_vcpu_id;
	out->emulation_flags = info.arch_config.emulation_flags;
	return 0;
}

static int rsl_pfn_types(xc_interface *xch, uint32_t domid, unsigned int n, xen_pfn_t *arr) {
	return xc_get_pfn_type_batch(xch, domid, n, arr) < 0 ? -errno : 0;
}

static int rsl_shadow(xc_interface *xch, uint32_t domid, unsigned int op) {
	return xc_shadow_control(xch, domid, op, NULL, 0) < 0 ? -errno : 0;
}

// rsl_clean reads and clears the dirty bitmap of the first pages frames
// through a hypercall buffer and copies it to out (words of 64 bits).
static int rsl_clean(xc_interface *xch, uint32_t domid, uint64_t *out,
                     unsigned long pages, uint64_t *covered, uint64_t *dirty) {
	DECLARE_HYPERCALL_BUFFER(unsigned long, bitmap);
	size_t bytes = ((pages + 63) / 64) * 8;
	int nr = (bytes + XC_PAGE_SIZE - 1) / XC_PAGE_SIZE;
	xc_shadow_op_stats_t stats = {0};
	long long rc;
	int e = 0;
	bitmap = xc_hypercall_buffer_alloc_pages(xch, bitmap, nr);
	if (!bitmap) return errno ? -errno : -ENOMEM;
	memset(bitmap, 0, (size_t)nr * XC_PAGE_SIZE);
	rc = xc_logdirty_control(xch, domid, XEN_DOMCTL_SHADOW_OP_CLEAN,
	                         HYPERCALL_BUFFER(bitmap), pages, 0, &stats);
	if (rc < 0) {
		e = errno;
	} else {
		memcpy(out, bitmap, bytes);
		*covered = (uint64_t)rc;
		*dirty = stats.dirty_count;
	}
	xc_hypercall_buffer_free_pages(xch, bitmap, nr);
	return e ? -e : 0;
}

static int rsl_map(xenforeignmemory_handle *fmem, uint32_t domid, size_t n,
                   const xen_pfn_t *pfns, int *errs, void **out) {
	*out = xenforeignmemory_map(fmem, domid, PROT_READ, n, pfns, errs);
	return *out ? 0 : -errno;
}

static int rsl_unmap(xenforeignmemory_handle *fmem, void *addr, size_t n) {
	return xenforeignmemory_unmap(fmem, addr, n) < 0 ? -errno : 0;
}

// The cooperative suspend of libxl (libxl_dom_suspend.c): the request is a
// "suspend" written to the guest's control/shutdown node; the guest
// acknowledges by clearing it and then shuts itself down with
// SHUTDOWN_suspend. Debian's PVH guests publish no suspend event channel.
static int rsl_xs_read(struct xs_handle *xsh, const char *path, char *buf, size_t size, int *found) {
	unsigned int len = 0;
	char *v = xs_read(xsh, XBT_NULL, path, &len);
	*found = 0;
	if (!v) return errno == ENOENT ? 0 : -errno;
	*found = 1;
	snprintf(buf, size, "%.*s", (int)len, v);
	free(v);
	return 0;
}

static int rsl_suspend_request(struct xs_handle *xsh, uint32_t domid) {
	char path[64];
	snprintf(path, sizeof path, "/local/domain/%u/control/shutdown", domid);
	return xs_write(xsh, XBT_NULL, path, "suspend", 7) ? 0 : -errno;
}

// rsl_suspend_cancel withdraws a request the guest has not taken yet, in a
// transaction so that a late acknowledgement is never overwritten.
// *withdrawn says whether the request was still pending.
static int rsl_suspend_cancel(struct xs_handle *xsh, uint32_t domid, int *withdrawn) {
	char path[64];
	snprintf(path, sizeof path, "/local/domain/%u/control/shutdown", domid);
	for (int tries = 0; tries < 16; tries++) {
		unsigned int len = 0;
		xs_transaction_t t = xs_transaction_start(xsh);
		if (t == XBT_NULL) return -errno;
		char *v = xs_read(xsh, t, path, &len);
		*withdrawn = v && len == 7 && !memcmp(v, "suspend", 7);
		free(v);
		if (*withdrawn && !xs_write(xsh, t, path, "", 0)) {
			int e = errno;
			xs_transaction_end(xsh, t, 1);
			return -e;
		}
		if (xs_transaction_end(xsh, t, 0)) return 0;
		if (errno != EAGAIN) return -errno;
	}
	return -EAGAIN;
}

// rsl_resume_fast lets a guest that suspended itself run on in place:
// xc_domain_resume(fast=1) makes SCHEDOP_shutdown return 1 ("cancelled"),
// so the guest keeps its event channels and grants.
static int rsl_resume_fast(xc_interface *xch, struct xs_handle *xsh, uint32_t domid) {
	if (xc_domain_resume(xch, domid, 1) < 0) return -errno;
	return xs_resume_domain(xsh, domid) ? 0 : -errno;
}

static int rsl_hvm_context(xc_interface *xch, uint32_t domid, uint8_t *buf, uint32_t size) {
	int n = xc_domain_hvm_getcontext(xch, domid, buf, size);
	return n < 0 ? -errno : n;
}

static int rsl_hvm_param(xc_interface *xch, uint32_t domid, uint32_t idx, uint64_t *v) {
	return xc_hvm_param_get(xch, domid, idx, v) < 0 ? -errno : 0;
}

static int rsl_tsc_info(xc_interface *xch, uint32_t domid, uint32_t *mode,
                        uint64_t *nsec, uint32_t *khz, uint32_t *incarnation) {
	return xc_domain_get_tsc_info(xch, domid, mode, nsec, khz, incarnation) < 0 ? -errno : 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"github.com/resilire/resilire/checkpointer"
)

// XC is the real Libxc over libxenctrl and libxenforeignmemory. It needs a
// Xen dom0 (/dev/xen/privcmd) and root.
type XC struct {
	xch  *C.xc_interface
	fmem *C.xenforeignmemory_handle
	xsh  *C.struct_xs_handle
	log  *C.xentoollog_logger
}

var _ Libxc = (*XC)(nil)

// xen_pfn_t is an unsigned long: the []uint64 <-> xen_pfn_t* casts below
// rely on it being 64 bits wide, as it is on x86-64.
var _ [8 - unsafe.Sizeof(C.xen_pfn_t(0))]struct{}
var _ [unsafe.Sizeof(C.xen_pfn_t(0)) - 8]struct{}

// Open opens the libxc and foreign-memory interfaces.
func Open() (*XC, error) {
	x := &XC{}
	if rc := C.rsl_open(&x.xch, &x.fmem, &x.log); rc < 0 {
		return nil, NewOpError(OpOpen, 0, syscall.Errno(-rc))
	}
	xsh, err := C.xs_open(0)
	if xsh == nil {
		x.Close()
		return nil, NewOpError(OpOpen, 0, errnoOr(err, syscall.ENOENT))
	}
	x.xsh = xsh
	return x, nil
}

// errnoOr is the errno cgo returned with a call, or def when it left none.
func errnoOr(err error, def syscall.Errno) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	return def
}

func check(op string, domid uint32, rc C.int) error {
	if rc < 0 {
		return NewOpError(op, domid, syscall.Errno(-rc))
	}
	return nil
}

// XenVersion implements Libxc.
func (x *XC) XenVersion() (uint16, uint16, error) {
	var v C.uint32_t
	if err := check(OpVersion, 0, C.rsl_version(x.xch, &v)); err != nil {
		return 0, 0, err
	}
	return uint16(v >> 16), uint16(v), nil
}

// DomainInfo implements Libxc.
func (x *XC) DomainInfo(domid uint32) (DomainInfo, error) {
	var in C.struct_rsl_info
	if err := check(OpDomainInfo, domid, C.rsl_domain_info(x.xch, C.uint32_t(domid), &in)); err != nil {
		return DomainInfo{}, err
	}
	return DomainInfo{
		ID: uint32(in.domid), HVM: in.hvm != 0, Dying: in.dying != 0, Shutdown: in.shutdown != 0, ShutdownReason: uint32(in.shutdown_reason),
		Paused: in.paused != 0, NrPages: uint64(in.nr_pages), MaxMemKB: uint64(in.max_memkb),
		OnlineVCPUs: uint32(in.online_vcpus), MaxVCPUID: uint32(in.max_vcpu_id),
		EmulationFlags: uint32(in.emulation_flags), NrGPFNs: uint64(in.nr_gpfns),
	}, nil
}

// PFNTypes implements Libxc.
func (x *XC) PFNTypes(domid uint32, pfns []uint64, types []uint32) error {
	if len(pfns) == 0 {
		return nil
	}
	if len(pfns) > MaxBatch || len(types) < len(pfns) {
		return fmt.Errorf("%s: batch of %d frames (max %d, %d type slots)", OpPFNTypes, len(pfns), MaxBatch, len(types))
	}
	// The call overwrites each entry with pfn|type; work on a copy.
	arr := make([]uint64, len(pfns))
	copy(arr, pfns)
	rc := C.rsl_pfn_types(x.xch, C.uint32_t(domid), C.uint(len(arr)), (*C.xen_pfn_t)(unsafe.Pointer(&arr[0])))
	if err := check(OpPFNTypes, domid, rc); err != nil {
		return err
	}
	for i, v := range arr {
		types[i] = uint32(v) & PageMask
	}
	return nil
}

// EnableLogDirty implements Libxc.
func (x *XC) EnableLogDirty(domid uint32) error {
	return check(OpEnableDirty, domid, C.rsl_shadow(x.xch, C.uint32_t(domid), C.XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY))
}

// DisableLogDirty implements Libxc.
func (x *XC) DisableLogDirty(domid uint32) error {
	return check(OpDisableDirty, domid, C.rsl_shadow(x.xch, C.uint32_t(domid), C.XEN_DOMCTL_SHADOW_OP_OFF))
}

// CleanDirty implements Libxc.
func (x *XC) CleanDirty(domid uint32, bitmap []uint64, nrPages uint64) (uint64, uint64, error) {
	if uint64(len(bitmap))*64 < nrPages || nrPages == 0 {
		return 0, 0, fmt.Errorf("%s: bitmap of %d words for %d frames", OpCleanDirty, len(bitmap), nrPages)
	}
	var covered, dirty C.uint64_t
	rc := C.rsl_clean(x.xch, C.uint32_t(domid), (*C.uint64_t)(unsafe.Pointer(&bitmap[0])),
		C.ulong(nrPages), &covered, &dirty)
	if err := check(OpCleanDirty, domid, rc); err != nil {
		return 0, 0, err
	}
	return uint64(covered), uint64(dirty), nil
}

// xcMapping is a foreign mapping made by MapFrames.
type xcMapping struct {
	x     *XC
	domid uint32
	addr  unsafe.Pointer
	n     int
}

func (m *xcMapping) Bytes() []byte { return unsafe.Slice((*byte)(m.addr), m.n*checkpointer.PageSize) }

func (m *xcMapping) Unmap() error {
	if m.addr == nil {
		return nil
	}
	rc := C.rsl_unmap(m.x.fmem, m.addr, C.size_t(m.n))
	m.addr = nil
	return check(OpUnmapFrames, m.domid, rc)
}

// MapFrames implements Libxc.
func (x *XC) MapFrames(domid uint32, pfns []uint64, errs []int32) (Mapping, error) {
	if len(pfns) == 0 || len(errs) < len(pfns) {
		return nil, fmt.Errorf("%s: %d frames, %d error slots", OpMapFrames, len(pfns), len(errs))
	}
	var addr unsafe.Pointer
	rc := C.rsl_map(x.fmem, C.uint32_t(domid), C.size_t(len(pfns)),
		(*C.xen_pfn_t)(unsafe.Pointer(&pfns[0])), (*C.int)(unsafe.Pointer(&errs[0])), &addr)
	if err := check(OpMapFrames, domid, rc); err != nil {
		return nil, err
	}
	return &xcMapping{x: x, domid: domid, addr: addr, n: len(pfns)}, nil
}

// StoreRead implements Libxc.
func (x *XC) StoreRead(path string) (string, bool, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var buf [256]C.char
	var found C.int
	if rc := C.rsl_xs_read(x.xsh, cpath, &buf[0], C.size_t(len(buf)), &found); rc < 0 {
		return "", false, fmt.Errorf("xenstore read %s: %w", path, syscall.Errno(-rc))
	}
	return C.GoString(&buf[0]), found != 0, nil
}

// RequestSuspend implements Libxc.
func (x *XC) RequestSuspend(domid uint32) error {
	return check(OpSuspend, domid, C.rsl_suspend_request(x.xsh, C.uint32_t(domid)))
}

// CancelSuspend implements Libxc.
func (x *XC) CancelSuspend(domid uint32) (bool, error) {
	var withdrawn C.int
	if err := check(OpSuspend, domid, C.rsl_suspend_cancel(x.xsh, C.uint32_t(domid), &withdrawn)); err != nil {
		return false, err
	}
	return withdrawn != 0, nil
}

// ResumeFast implements Libxc.
func (x *XC) ResumeFast(domid uint32) error {
	return check(OpResume, domid, C.rsl_resume_fast(x.xch, x.xsh, C.uint32_t(domid)))
}

// HVMContext implements Libxc.
func (x *XC) HVMContext(domid uint32) ([]byte, error) {
	n := C.rsl_hvm_context(x.xch, C.uint32_t(domid), nil, 0)
	if err := check(OpHVMContext, domid, n); err != nil {
		return nil, err
	}
	buf := make([]byte, int(n))
	if n == 0 {
		return buf, nil
	}
	n = C.rsl_hvm_context(x.xch, C.uint32_t(domid), (*C.uint8_t)(unsafe.Pointer(&buf[0])), C.uint32_t(len(buf)))
	if err := check(OpHVMContext, domid, n); err != nil {
		return nil, err
	}
	return buf[:int(n)], nil
}

// HVMParam implements Libxc.
func (x *XC) HVMParam(domid uint32, index uint32) (uint64, error) {
	var v C.uint64_t
	if err := check(OpHVMParam, domid, C.rsl_hvm_param(x.xch, C.uint32_t(domid), C.uint32_t(index), &v)); err != nil {
		return 0, err
	}
	return uint64(v), nil
}

// TSCInfo implements Libxc.
func (x *XC) TSCInfo(domid uint32) (TSCInfo, error) {
	var mode, khz, inc C.uint32_t
	var nsec C.uint64_t
	if err := check(OpTSCInfo, domid, C.rsl_tsc_info(x.xch, C.uint32_t(domid), &mode, &nsec, &khz, &inc)); err != nil {
		return TSCInfo{}, err
	}
	return TSCInfo{Mode: uint32(mode), KHz: uint32(khz), ElapsedNsec: uint64(nsec), Incarnation: uint32(inc)}, nil
}

// Close releases both handles; mappings must be unmapped first.
func (x *XC) Close() error {
	if x.fmem != nil {
		C.xenforeignmemory_close(x.fmem)
		x.fmem = nil
	}
	if x.xsh != nil {
		C.xs_close(x.xsh)
		x.xsh = nil
	}
	if x.xch != nil {
		C.xc_interface_close(x.xch)
		x.xch = nil
	}
	if x.log != nil {
		C.xtl_logger_destroy(x.log)
		x.log = nil
	}
	return nil
}
