// SPDX-License-Identifier: Apache-2.0

package xen

import "syscall"

// errnoOf turns a per-frame error from xenforeignmemory_map into an Errno;
// the library reports them as negative errno values.
func errnoOf(e int32) syscall.Errno {
	if e < 0 {
		e = -e
	}
	return syscall.Errno(e)
}
