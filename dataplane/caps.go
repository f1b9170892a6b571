// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// requiredCaps are what Attach and Detach need: loading programs and maps
// (CAP_BPF, or CAP_SYS_ADMIN on kernels < 5.8), reading kernel memory in
// the ring capture (CAP_PERFMON), links, qdiscs and taps (CAP_NET_ADMIN).
var requiredCaps = []struct {
	cap  int
	name string
	alt  int // an alternative that also grants it (CAP_SYS_ADMIN), or -1
}{
	{unix.CAP_BPF, "CAP_BPF", unix.CAP_SYS_ADMIN},
	{unix.CAP_PERFMON, "CAP_PERFMON", unix.CAP_SYS_ADMIN},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", -1},
}

// checkCaps fails with ErrPermission naming the missing capabilities of
// the calling thread.
func checkCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	has := func(c int) bool { return c >= 0 && data[c/32].Effective&(1<<(uint(c)%32)) != 0 }
	var missing []string
	for _, rc := range requiredCaps {
		if !has(rc.cap) && !has(rc.alt) {
			missing = append(missing, rc.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: %w", strings.Join(missing, ", "), ErrPermission)
	}
	return nil
}
