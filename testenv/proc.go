// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSS is process pid's peak resident memory in bytes (VmHWM of
// /proc/PID/status), 0 if unknown or the process is gone. It counts the
// guest RAM an agent maps (shared with QEMU) and ring buffers' double
// mappings: see AnonRSS for the agent's own memory.
func PeakRSS(pid int) uint64 { return procStatus(pid, "VmHWM") }

// AnonRSS is process pid's resident anonymous memory now (RssAnon): the
// memory it costs the host beyond the guest RAM it maps from QEMU's file.
func AnonRSS(pid int) uint64 { return procStatus(pid, "RssAnon") }

// procStatus is field (in kB) of /proc/PID/status, in bytes; 0 if unknown.
func procStatus(pid int, field string) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
