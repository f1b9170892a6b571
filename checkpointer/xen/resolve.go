// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// XLCommand is the xl binary used to turn a domain name into its id.
var XLCommand = "xl"

// ResolveDomID returns the domain id of vm: vm itself if it is a number,
// otherwise what `xl domid <vm>` prints (libxc knows no names; xl reads
// them from xenstore).
func ResolveDomID(ctx context.Context, vm string) (uint32, error) {
	if id, err := strconv.ParseUint(vm, 10, 32); err == nil {
		return uint32(id), nil
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, XLCommand, "domid", vm)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("domain %q not found (%s domid: %w: %s): %w", vm, XLCommand, err,
			strings.TrimSpace(stderr.String()), ErrNoDomain)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(out.String()), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s domid %s printed %q: %w", XLCommand, vm, out.String(), err)
	}
	return uint32(id), nil
}
