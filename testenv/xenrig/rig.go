// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest"
	"github.com/resilire/resilire/testenv/guest/kv"
)

// Addresses of the rig. The client sits on the service LAN in the rig's
// namespace; the dom0s talk over the replication link.
const (
	GuestIP   = "10.1.0.10"
	ClientIP  = "10.1.0.100"
	GuestName = "guest"
	GuestVif  = "rsl-guest" // fixed vifname: the data plane's port on both hosts
	GuestMAC  = "00:16:3e:00:00:50"
)

func lanMAC(i int) string { return fmt.Sprintf("52:54:00:00:01:%02x", i+1) }
func repMAC(i int) string { return fmt.Sprintf("52:54:00:00:02:%02x", i+1) }

// ReplIP is host i's (0 or 1) address on the replication link.
func ReplIP(i int) string { return fmt.Sprintf("10.2.0.%d", i+1) }

// GuestAddr is the guest's kv service.
func GuestAddr() string { return net.JoinHostPort(GuestIP, fmt.Sprint(kv.Port)) }

// Rig is two nested Xen hosts, their links, the test guest's files and a
// resilire binary built with -tags xen in each dom0's /share.
type Rig struct {
	NS    *testenv.NS
	Hosts []*Host
	Dir   string
}

// Options shape a rig.
type Options struct {
	Hosts int // 1 or 2 (default 2)
	// Extra files to put in every dom0's /share: name -> host path.
	Files map[string]string
}

// AssetsDir is where the images are cached: testenv/assets/xen of the
// source tree.
func AssetsDir() string {
	if d := guest.DefaultDir(); d != "" {
		return filepath.Join(d, "xen")
	}
	return filepath.Join(os.TempDir(), "resilire-xen-assets")
}

// Require skips tb unless the machine can run the rig: root with network
// namespaces, QEMU, debootstrap (images.sh's first build) and enough RAM.
// With RESILIRE_TEST_PRIVILEGED=1 it fails instead.
func Require(tb testing.TB) {
	tb.Helper()
	testenv.RequirePrivileged(tb)
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.RequireFeature(tb, "nested xen rig", fmt.Errorf("%s not installed (scripts/setup.sh)", tool))
		}
	}
}

// New builds (or reuses) the images, the guest and the binary, makes the
// links and boots the hosts with their dom0s configured. Everything is torn
// down when tb ends.
func New(tb testing.TB, ctx context.Context, opts Options) *Rig {
	tb.Helper()
	if opts.Hosts == 0 {
		opts.Hosts = 2
	}
	dir := tb.TempDir()
	var (
		wg               sync.WaitGroup
		img              Images
		assets           *guest.Assets
		imgErr, guestErr error
		binErr           error
		bin              = filepath.Join(dir, "resilire")
		binOut           []byte
	)
	wg.Add(3)
	go func() { defer wg.Done(); img, imgErr = BuildImages(ctx, AssetsDir()) }()
	go func() { defer wg.Done(); assets, guestErr = guest.Build(ctx, guest.DefaultDir()) }()
	go func() {
		defer wg.Done()
		cmd := exec.CommandContext(ctx, "go", "build", "-tags", "xen", "-o", bin, ".")
		cmd.Dir = guest.ModuleRoot()
		binOut, binErr = cmd.CombinedOutput()
	}()
	wg.Wait()
	for _, err := range []error{imgErr, guestErr} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	if binErr != nil {
		tb.Fatalf("build resilire -tags xen: %v: %s", binErr, binOut)
	}

	r := &Rig{Dir: dir, NS: testenv.NewNS(tb, testenv.UniqueName("xrig"))}
	if err := r.NS.Do(func() error { return makeLinks(opts.Hosts) }); err != nil {
		tb.Fatalf("rig links: %v", err)
	}
	files := map[string]string{"resilire": bin, "vmlinuz": assets.Kernel, "initrd.cpio": assets.Initrd}
	for k, v := range opts.Files {
		files[k] = v
	}
	hosts := make([]*Host, opts.Hosts)
	errs := make([]error, opts.Hosts)
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("xen%d", i+1)
			hosts[i], errs[i] = Boot(ctx, HostConfig{Name: name, Images: img, Dir: filepath.Join(dir, name), Netns: r.NS.Name,
				NICs: []NIC{{Tap: name + "lan", MAC: lanMAC(i)}, {Tap: name + "rep", MAC: repMAC(i)}}})
		}()
	}
	wg.Wait()
	for _, h := range hosts {
		if h != nil {
			tb.Cleanup(h.Kill)
			r.Hosts = append(r.Hosts, h)
		}
	}
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	for i, h := range r.Hosts {
		for name, src := range files {
			if err := copyFile(src, filepath.Join(h.Share, name)); err != nil {
				tb.Fatal(err)
			}
		}
		if _, err := h.Run(ctx, time.Minute, dom0Setup(i)); err != nil {
			tb.Fatal(err)
		}
	}
	return r
}

// makeLinks makes, in the rig's namespace, the service LAN and the
// replication link (a bridge each) with one tap per host on each, and the
// client's address on the LAN.
func makeLinks(hosts int) error {
	for _, br := range []string{"lan", "rep"} {
		b := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}}
		if err := netlink.LinkAdd(b); err != nil {
			return fmt.Errorf("bridge %s: %w", br, err)
		}
		if err := netlink.LinkSetUp(b); err != nil {
			return err
		}
		for i := range hosts {
			tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("xen%d%s", i+1, br), MasterIndex: b.Index},
				Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS}
			if err := netlink.LinkAdd(tap); err != nil {
				return fmt.Errorf("tap %s: %w", tap.Name, err)
			}
			if err := netlink.LinkSetUp(tap); err != nil {
				return err
			}
		}
	}
	lan, err := netlink.LinkByName("lan")
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr(ClientIP + "/24")
	return netlink.AddrAdd(lan, addr)
}

// dom0Setup bridges the LAN NIC to xenbr0 (where the guest's vif goes),
// addresses the replication NIC and installs the guest's files and xl
// config (the same config on both hosts: the restore uses it too).
func dom0Setup(i int) string {
	return fmt.Sprintf(`set -e
nic() { for d in /sys/class/net/*; do [ "$(cat $d/address)" = "$1" ] && basename $d; done; return 0; }
lan=$(nic %s); rep=$(nic %s)
[ -n "$lan" ] && [ -n "$rep" ] || { ls /sys/class/net; exit 1; }
ip link add xenbr0 type bridge
ip link set "$lan" master xenbr0
ip link set "$lan" up
ip link set xenbr0 up
ip addr add %s/24 dev "$rep"
ip link set "$rep" up
# guest consoles to /var/log/xen/console/guest-NAME.log
kill $(cat /run/xenconsoled.pid) 2>/dev/null || true
sleep 0.5
mkdir -p /var/log/xen/console
/usr/lib/xen-4.17/bin/xenconsoled --log=guest --log-dir=/var/log/xen/console --pid-file=/run/xenconsoled.pid
mkdir -p /root/guest /etc/resilire /var/lib/resilire
cp /share/vmlinuz /share/initrd.cpio /root/guest/
cp /share/resilire /usr/local/bin/resilire
chmod +x /usr/local/bin/resilire
cat > /etc/resilire/%s.cfg <<'CFG'
%s
CFG
`, lanMAC(i), repMAC(i), ReplIP(i), GuestName, GuestConfig())
}

// GuestConfig is the xl config of the test guest: a PVH domU running the
// project's test guest (kv store), one vCPU, 128 MiB, its vif on xenbr0
// with a fixed name.
func GuestConfig() string {
	return strings.Join([]string{
		`name = "` + GuestName + `"`,
		`type = "pvh"`,
		`memory = 128`,
		`vcpus = 1`,
		guestCPUs(),
		`kernel = "/root/guest/vmlinuz"`,
		`ramdisk = "/root/guest/initrd.cpio"`,
		`extra = "console=hvc0 quiet panic=-1 guest.ip=` + GuestIP + `/24"`,
		`vif = [ 'bridge=xenbr0,vifname=` + GuestVif + `,mac=` + GuestMAC + `' ]`,
		`on_crash = "preserve"`,
		`on_reboot = "preserve"`, // the guest panics with panic=-1: keep it for its console
	}, "\n")
}

// Unpinned reports whether RESILIRE_XEN_UNPINNED asks for the rig's old
// CPU layout, for the diagnostic: dom0 on every pCPU and the guest
// sharing one with it, where guests crash now and then under nested TCG.
func Unpinned() bool { return os.Getenv("RESILIRE_XEN_UNPINNED") != "" }

// guestCPUs pins the guest to pCPU 1, which dom0 does not use (Boot).
func guestCPUs() string {
	if Unpinned() {
		return ""
	}
	return `cpus = "1"`
}

// HVMGuestConfig is an HVM domU with a device model (qemu-system-xen in
// dom0) booting the test guest's kernel directly: a guest the driver
// must refuse.
func HVMGuestConfig(name string) string {
	return strings.Join([]string{
		`name = "` + name + `"`,
		`type = "hvm"`,
		`memory = 128`,
		`vcpus = 1`,
		`kernel = "/root/guest/vmlinuz"`,
		`ramdisk = "/root/guest/initrd.cpio"`,
		`extra = "console=ttyS0 quiet panic=-1"`,
		`serial = "pty"`,
		`vnc = 0`,
		`nographic = 1`,
	}, "\n")
}

// StartGuest creates the guest on host h and waits until its kv service
// answers the client.
func (r *Rig) StartGuest(ctx context.Context, h *Host) error {
	if _, err := h.Run(ctx, 3*time.Minute, "xl create /etc/resilire/"+GuestName+".cfg"); err != nil {
		return err
	}
	return r.WaitGuest(ctx, 3*time.Minute)
}

// WaitGuest waits until the guest's kv service accepts a connection from
// the client.
func (r *Rig) WaitGuest(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := r.Dial(dctx, "tcp", GuestAddr())
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("guest's kv service not up after %v: %w", limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Dial connects from the client's place on the LAN.
func (r *Rig) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return testenv.DialIn(ctx, r.NS.Name, network, addr)
}

// Console is the guest's console output on host h so far (xenconsoled's
// log), at most the last 4 KiB.
func Console(ctx context.Context, h *Host) string {
	out, err := h.Run(ctx, 30*time.Second, "tail -c 4096 /var/log/xen/console/guest-"+GuestName+".log")
	if err != nil {
		return err.Error()
	}
	return out
}

// LogConsoles logs the guest's console and `xl list` of every live host.
func (r *Rig) LogConsoles(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for _, h := range r.Hosts {
		// Xen's own console is the host's serial port: readable even when
		// dom0 is gone.
		if b, err := os.ReadFile(h.Serial()); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "Triple fault") || strings.Contains(l, "crashed") {
					t.Logf("%s: hypervisor: %s", h.Name(), strings.TrimSpace(l))
				}
			}
		}
		if !h.Alive() {
			continue
		}
		list, _ := h.Run(ctx, 30*time.Second, "xl list; xl dmesg | grep -a -i -B2 -A12 'triple fault\\|crash' | tail -40")
		t.Logf("%s: xl list and hypervisor log:\n%s\nguest console:\n%s", h.Name(), list, Console(ctx, h))
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
