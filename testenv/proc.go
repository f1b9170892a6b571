// SPDX-License-Identifier: Apache-2.0

package testenv

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSS is process pid's peak resident memory in bytes (VmHWM of
// /proc/PID/status), 0 if unknown or the process is gone.
func PeakRSS(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
