// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"errors"
	"fmt"
	"syscall"
)

// Errors of the Xen driver. Each one is wrapped with the operation, the
// domain and, for libxc failures, the errno.
var (
	// ErrNotBuilt means the binary was built without the xen build tag.
	ErrNotBuilt = errors.New("xen support not built in (rebuild with -tags xen and libxen-dev)")
	// ErrNoXen means libxc could not reach a hypervisor (no /dev/xen/privcmd).
	ErrNoXen = errors.New("no xen hypervisor here (not running in a xen dom0)")
	// ErrNoDomain means the domain does not exist (ESRCH).
	ErrNoDomain = errors.New("domain not found")
	// ErrPermission means libxc refused the operation (EPERM/EACCES): not
	// root in dom0, or an XSM policy forbids it.
	ErrPermission = errors.New("not permitted (needs root in dom0)")
	// ErrLogDirtyBusy means log-dirty mode was already on: another tool
	// (a live migration, xl save, Remus/COLO) is tracking this domain.
	ErrLogDirtyBusy = errors.New("log-dirty already enabled by another tool")
	// ErrUnsupportedGuest means the domain is PV, or HVM with a device model.
	ErrUnsupportedGuest = errors.New("unsupported guest type")
	// ErrDying means the domain is being destroyed or has shut down.
	ErrDying = errors.New("domain is dying or shut down")
	// ErrNotPaused means an operation that needs a consistent snapshot was
	// called while the guest runs.
	ErrNotPaused = errors.New("domain is not paused")
	// ErrLogDirtyOff means HarvestDirty was called before EnableDirtyLog.
	ErrLogDirtyOff = errors.New("log-dirty tracking is not enabled")
	// ErrLayoutChanged means a frame outside the memory map captured at open
	// became populated (ballooning, memory hot-plug): the replica no longer
	// describes the guest and replication must restart.
	ErrLayoutChanged = errors.New("guest memory map changed")
	// ErrNoSuspend means the guest does not take suspend requests (no
	// control/feature-suspend in xenstore): a pause-only image would
	// restore into a guest that never runs again, so it is refused.
	ErrNoSuspend = errors.New("guest does not support cooperative suspend")
	// ErrSuspendTimeout means the guest did not suspend itself in time; the
	// request was withdrawn and no checkpoint taken.
	ErrSuspendTimeout = errors.New("guest did not suspend in time")
	// ErrRange means a page number is outside the domain's memory.
	ErrRange = errors.New("page number out of range")
)

// OpError is a failed libxc call: which operation, on which domain, and the
// errno libxc left. It unwraps to both the errno and the matching sentinel,
// so errors.Is(err, ErrNoDomain) and errors.Is(err, syscall.ESRCH) both hold.
type OpError struct {
	Op     string // "pause", "enable log-dirty", "map frames", ...
	Domain uint32
	Errno  syscall.Errno
	Kind   error // a sentinel above, or nil
}

// Error renders the failure for an operator: the domain and what was tried.
func (e *OpError) Error() string {
	switch e.Kind {
	case ErrNoDomain:
		return fmt.Sprintf("%s: domain %d not found", e.Op, e.Domain)
	case ErrLogDirtyBusy:
		return fmt.Sprintf("%s: domain %d: log-dirty already enabled by another tool (a migration, xl save or another replicator is running; "+
			"or passthrough devices): %v", e.Op, e.Domain, e.Errno)
	case ErrPermission:
		return fmt.Sprintf("%s: domain %d: not permitted (needs root in dom0): %v", e.Op, e.Domain, e.Errno)
	case ErrNoXen:
		return fmt.Sprintf("%s: no xen hypervisor here (/dev/xen/privcmd missing or not a dom0): %v", e.Op, e.Errno)
	}
	return fmt.Sprintf("%s: domain %d: %v", e.Op, e.Domain, e.Errno)
}

// Unwrap exposes the errno and the sentinel.
func (e *OpError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Errno}
	}
	return []error{e.Kind, e.Errno}
}

// Operation names used in OpError.
const (
	OpOpen         = "open libxc"
	OpVersion      = "xen version"
	OpDomainInfo   = "domain info"
	OpPFNTypes     = "read frame types"
	OpEnableDirty  = "enable log-dirty"
	OpDisableDirty = "disable log-dirty"
	OpCleanDirty   = "read and clear dirty bitmap"
	OpMapFrames    = "map frames"
	OpUnmapFrames  = "unmap frames"
	OpHVMContext   = "get hvm context"
	OpHVMParam     = "get hvm param"
	OpTSCInfo      = "get tsc info"
	OpSuspend      = "suspend request"
	OpResume       = "fast resume"
)

// NewOpError classifies errno for op on domain. It is the single place where
// libxc's errno values get their meaning.
func NewOpError(op string, domain uint32, errno syscall.Errno) *OpError {
	e := &OpError{Op: op, Domain: domain, Errno: errno}
	switch {
	case errno == syscall.ESRCH:
		e.Kind = ErrNoDomain
	case errno == syscall.EPERM || errno == syscall.EACCES:
		e.Kind = ErrPermission
	case (errno == syscall.EBUSY || errno == syscall.EINVAL) && op == OpEnableDirty:
		// Xen 4.17 answers EINVAL when log-dirty mode is already on (and
		// for a domain with passthrough devices, which is never tracked).
		e.Kind = ErrLogDirtyBusy
	case (errno == syscall.ENOENT || errno == syscall.ENODEV) && op == OpOpen:
		e.Kind = ErrNoXen
	}
	return e
}
