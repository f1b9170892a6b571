// SPDX-License-Identifier: Apache-2.0

package guest

import (
	"net/netip"
	"os"
	"path/filepath"

	"github.com/resilire/resilire/checkpointer/qemu"
)

// KVMEnv set to 1 makes QEMUConfig use -accel kvm (real hosts; KVM is not
// usable on the CI machines, so TCG is the default).
const KVMEnv = "RESILIRE_QEMU_KVM"

// QEMUConfig is the QEMU configuration of the test guest: these assets,
// 128 MiB of RAM in memPath, the NIC on tap inside netns, the guest
// address ip (guest.ip= on the kernel command line), and the QMP socket,
// pid file and console log in runDir. The standby's config is derived with
// Config.ForHost so that the machines match.
func (a *Assets) QEMUConfig(name, memPath, tap, netns, runDir string, ip netip.Prefix) qemu.Config {
	return qemu.Config{
		Name: name, MemPath: memPath,
		Kernel: a.Kernel, Initrd: a.Initrd,
		Append:  qemu.DefaultAppend + " guest.ip=" + ip.String(),
		Tap:     tap,
		Netns:   netns,
		QMPPath: filepath.Join(runDir, name+".qmp"), SerialPath: filepath.Join(runDir, name+".serial"),
		KVM: os.Getenv(KVMEnv) == "1",
	}
}
