// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"context"
	"encoding/json"

	"golang.org/x/sys/unix"
)

// BreakTracking loses the registration and makes the re-injection fail
// (the RAM mapping is not found): the next harvest must fall back.
func BreakTracking(d *Domain) {
	DropRegistration(d)
	if t, ok := d.exact.(*uffdTracker); ok {
		t.memPath = "/nonexistent"
	}
}

// DropRegistration closes the tracker's userfaultfd, as a re-mapping of
// QEMU's RAM would lose the registration: the next harvest must notice,
// inject again and report every page once.
func DropRegistration(d *Domain) {
	if t, ok := d.exact.(*uffdTracker); ok && t.fd >= 0 {
		_ = unix.Close(t.fd)
		t.fd = -1
	}
}

// QMP runs one QMP command on v's monitor (tests drive QEMU features the
// driver does not use, such as drive-mirror for comparison).
func QMP(ctx context.Context, v *VM, cmd string, args any) (json.RawMessage, error) {
	return v.mon.run(ctx, cmd, args)
}
