// SPDX-License-Identifier: Apache-2.0

// Package xenrig runs real Xen hosts for the tests: Xen 4.17 with a
// Debian 12 dom0, nested under QEMU TCG (-cpu qemu64,+svm,+npt), built from
// Debian packages only (images.sh: the hypervisor from
// xen-hypervisor-4.17-amd64, a debootstrap dom0 with xen-utils-4.17).
//
// Commands reach a dom0 through a queue on its 9p share, never through the
// serial console (Xen's console input drops characters on long lines): the
// host writes N.cmd, the dom0's init runs it and writes N.out and N.rc.
// A Rig is two such hosts on two links made in a network namespace: the
// service LAN (each dom0 bridges its first NIC to xenbr0, where the guest's
// vif goes, and the test's client sits on the LAN) and the replication link
// between the dom0s.
package xenrig
