// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDomainFlagErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "none.json")
	dir := t.TempDir()
	img, sock := filepath.Join(dir, "disk.img"), filepath.Join(dir, "disk.sock")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := func(name, diskSocket string) string {
		p := filepath.Join(dir, name)
		js := `{"MemPath": "/dev/shm/none", "Kernel": "k", "QMPPath": "` + dir + `/q", "SerialPath": "` + dir + `/s", "DiskSocket": "` + diskSocket + `"}`
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain, other := cfgFile("plain.json", ""), cfgFile("other.json", "/run/other.sock")
	disk := []string{"--disk-image", img, "--disk-socket", sock}
	// An xl config whose disk is another socket's.
	xenNoDisk := filepath.Join(dir, "guest.cfg")
	if err := os.WriteFile(xenNoDisk, []byte("name = \"x\"\ndisk = [ 'vdev=xvda,script=block-resilire,target=/run/other.nbd' ]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "qemu"}, "needs --qemu-config"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "qemu", "--qemu-config", bad}, "--qemu-config " + bad},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "qemu", "--qemu-config", missing}, "--qemu-config"},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "hyperv"}, `--domain "hyperv": want qemu or xen`},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1"}, "--domain is required: qemu or xen"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0"}, "--domain is required: qemu or xen"},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "sim"}, "--domain sim: the simulated guest is for tests only"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "sim"}, "--domain sim: the simulated guest is for tests only"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "xen", "--xen-memory-mib", "64"}, "flag provided but not defined: -xen-memory-mib"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "xen"}, "xen"},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "xen", "--disk-image", img},
			"--disk-image with --domain xen needs --disk-socket"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "xen", "--disk-image", img},
			"--disk-image with --domain xen needs --disk-socket"},
		{append([]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "xen"}, disk...),
			"--disk-image needs --start-vm with --domain xen"},
		{append([]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "xen", "--start-vm", "--xen-config", xenNoDisk}, disk...),
			"has no disk with script=block-resilire,target=" + sock},
		{append([]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "xen", "--xen-config", xenNoDisk}, disk...),
			"has no disk with script=block-resilire,target=" + sock},
		{append([]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "xen", "--start-vm", "--xen-config", missing}, disk...),
			"the guest's xl config (--xen-config)"},
		{[]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "xen", "--start-vm", "--dataplane", "--xen-config", xenNoDisk},
			"no vifname= on the guest's vif"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "xen", "--reprotect-to", "127.0.0.1:1"},
			"a Xen guest restored here is not protected again yet"},
		{append([]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "qemu", "--qemu-config", plain}, disk...),
			"--disk-image needs --start-vm"},
		{append([]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "qemu", "--qemu-config", other, "--start-vm"}, disk...),
			"QEMU would not open the served image"},
		{[]string{"standby", "--vm", "x", "--listen", "127.0.0.1:0", "--domain", "qemu", "--qemu-config", other}, "no --disk-image serves it"},
		{append([]string{"protect", "--vm", "x", "--backup", "127.0.0.1:1", "--domain", "qemu", "--qemu-config", plain, "--start-vm",
			"--disk-epoch-max-mib", "-1"}, disk...), "--disk-epoch-max-mib -1: must be 0"},
	} {
		var out, errb bytes.Buffer
		args := append(append([]string{"resilire"}, tc.args...), "--metrics-addr", "")
		if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit 0 or error without %q: %q", tc.args, tc.want, errb.String())
		}
	}
}

// The simulated domain and its flags stay out of the agents' help.
func TestAgentHelpHidesSim(t *testing.T) {
	for _, cmd := range []string{"protect", "standby"} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), &out, &errb, []string{"resilire", cmd, "--help"}); code != 0 {
			t.Fatalf("%s --help exited %d: %s", cmd, code, errb.String())
		}
		if !strings.Contains(out.String(), "--domain value") {
			t.Fatalf("%s --help lists no --domain: %q", cmd, out.String())
		}
		if strings.Contains(out.String(), "sim") {
			t.Errorf("%s --help mentions sim:\n%s", cmd, out.String())
		}
	}
}
