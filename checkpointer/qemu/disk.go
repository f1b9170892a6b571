// SPDX-License-Identifier: Apache-2.0

package qemu

// diskArgs attaches the guest's disk: QEMU's nbd blockdev on the agent's
// Unix socket (disk.Export) under a virtio-blk device. QEMU's stop drains
// the device's in-flight requests before it returns, so a disk epoch cut
// taken while paused is exact. reconnect-delay=0: if the export goes away
// the guest gets I/O errors at once, never silently lost writes.
func (c Config) diskArgs() []string {
	if c.DiskSocket == "" {
		return nil
	}
	return []string{
		"-blockdev", "driver=nbd,node-name=disk0,server.type=unix,server.path=" + c.DiskSocket + ",reconnect-delay=0",
		"-device", "virtio-blk-pci,drive=disk0,id=vda",
	}
}
