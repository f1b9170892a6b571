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

// ConfigPath is the dom0 convention for vm's xl config, the same on both
// hosts: protect --start-vm creates the guest with it, the standby
// restores it with it.
func ConfigPath(vm string) string { return "/etc/resilire/" + vm + ".cfg" }

// Create builds the guest of the xl config cfg paused (`xl create -p`) and
// returns once xl has built it: its disks' hotplug scripts ran (an image
// served to it must be up before) and its vifs exist, so the caller can
// hold their output before the guest's first instruction (Unpause). A
// domain named vm that exists already is refused: it would not use what
// this caller serves.
func Create(ctx context.Context, vm, cfg string) error {
	if _, err := ResolveDomID(ctx, vm); err == nil {
		return fmt.Errorf("domain %q exists already: creating it from %s needs it gone (xl destroy %s)", vm, cfg, vm)
	}
	return xl(ctx, "create", "-p", cfg)
}

// Unpause starts a domain Create left paused (`xl unpause`).
func Unpause(ctx context.Context, vm string) error { return xl(ctx, "unpause", vm) }

// Destroy destroys the domain vm (`xl destroy`).
func Destroy(ctx context.Context, vm string) error { return xl(ctx, "destroy", vm) }

func xl(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, XLCommand, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", XLCommand, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
