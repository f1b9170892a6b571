// SPDX-License-Identifier: Apache-2.0

// Package xen is the Xen driver of the checkpointer: on the primary, a
// checkpointer.Domain over libxenctrl and libxenforeignmemory (pause and
// unpause, log-dirty tracking read and cleared with XEN_DOMCTL_SHADOW_OP_CLEAN,
// dirty frames mapped in batches, HVM context, HVM parameters and TSC info);
// on the backup, a checkpointer.Replica and Standby that turn the replica into
// a libxc migration stream v2, wrapped in the libxl and xl containers, and
// start it with a configured restore command (`xl restore` by default).
//
// Everything that talks to libxc goes through the small Libxc interface. Its
// real implementation needs cgo and the build tag `xen` (Debian libxen-dev);
// the default build carries only the pure-Go logic, and OpenDomain then
// returns ErrNotBuilt. Unit tests drive the driver through a fake Libxc; the
// fake is a test double, not Xen.
//
// Supported guests are HVM containers without a device model (PVH): the
// driver refuses HVM guests with emulated devices, because QEMU's own writes
// to guest memory and its device state are not captured here, and it refuses
// PV guests, whose stream needs p2m and page-table records.
package xen
