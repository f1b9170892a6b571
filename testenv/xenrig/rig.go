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
	GuestVif  = "rsl-guest" // fixed vifname (deploy/xen/guest-cfg.sh): the data plane's port on both hosts
	GuestMAC  = "00:16:3e:00:00:50"
	// The guest's disk (Options.Disk): the image in each dom0, served by
	// the agent on the socket the xl config's disk names.
	DiskImage  = "/var/lib/resilire/guest.img"
	DiskSocket = "/run/resilire/guest.nbd"
	DiskMiB    = 64
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
	Disk  bool // Options.Disk
}

// Options shape a rig.
type Options struct {
	Hosts int // 1 or 2 (default 2)
	// Extra files to put in every dom0's /share: name -> host path.
	Files map[string]string
	// Disk gives the guest a disk (DiskImage, a fresh ext4 on every host)
	// served by the agents over NBD (DiskSocket), with its database
	// workload on it; the guest is then created by protect --start-vm.
	Disk bool
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

	r := &Rig{Dir: dir, NS: testenv.NewNS(tb, testenv.UniqueName("xrig")), Disk: opts.Disk}
	if err := r.NS.Do(func() error { return makeLinks(opts.Hosts) }); err != nil {
		tb.Fatalf("rig links: %v", err)
	}
	files := map[string]string{"resilire": bin, "vmlinuz": assets.Kernel, "initrd.cpio": assets.Initrd,
		"dom0-net.sh": DeployFile("dom0-net.sh"), "guest-cfg.sh": DeployFile("guest-cfg.sh"), "block-resilire": DeployFile("block-resilire")}
	if opts.Disk {
		img, err := makeDiskImage(ctx, dir)
		if err != nil {
			tb.Fatal(err)
		}
		files["guest.img"] = img
	}
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
		if _, err := h.Run(ctx, time.Minute, dom0Setup(i, opts.Disk)); err != nil {
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

// makeDiskImage makes the guest's disk: a fresh ext4 of DiskMiB, as an
// installer would leave it. Every host gets a copy: the backup's is
// overwritten by the initial synchronisation.
func makeDiskImage(ctx context.Context, dir string) (string, error) {
	img := filepath.Join(dir, "guest.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return "", err
	}
	if err := os.Truncate(img, DiskMiB<<20); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096",
		"-E", "lazy_itable_init=0,lazy_journal_init=0", img).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	return img, nil
}

// dom0Setup makes dom0's network and the guest's xl config with the
// deployment's own scripts (deploy/xen, as the Vagrant rig does): xenbr0
// with the LAN NIC as its port (where the guest's vif goes), the
// replication NIC addressed, the block hotplug script, the guest's files
// and its config (the same on both hosts: the restore uses it too); with
// disk, the guest's disk image and a config that attaches it through the
// agent's socket.
func dom0Setup(i int, disk bool) string {
	cpus := "1" // off dom0's pCPU: see Unpinned
	if Unpinned() {
		cpus = ""
	}
	diskSetup, sock := "", ""
	if disk {
		diskSetup, sock = "cp /share/guest.img "+DiskImage, DiskSocket
	}
	return fmt.Sprintf(`set -e
nic() { for d in /sys/class/net/*; do [ "$(cat $d/address)" = "$1" ] && basename $d; done; return 0; }
lan=$(nic %s); rep=$(nic %s)
[ -n "$lan" ] && [ -n "$rep" ] || { ls /sys/class/net; exit 1; }
sh /share/dom0-net.sh "$lan" "$rep" %s/24
# guest consoles to /var/log/xen/console/guest-NAME.log
kill $(cat /run/xenconsoled.pid) 2>/dev/null || true
sleep 0.5
mkdir -p /var/log/xen/console
/usr/lib/xen-4.17/bin/xenconsoled --log=guest --log-dir=/var/log/xen/console --pid-file=/run/xenconsoled.pid
mkdir -p /root/guest /etc/resilire /var/lib/resilire
cp /share/vmlinuz /share/initrd.cpio /root/guest/
cp /share/resilire /usr/local/bin/resilire
chmod +x /usr/local/bin/resilire
install -m 0755 /share/block-resilire /etc/xen/scripts/block-resilire
mkdir -p /run/resilire
%s
GUEST_CPUS=%s GUEST_DISK_SOCKET=%s sh /share/guest-cfg.sh %s /root/guest %s/24 %s > /etc/resilire/%s.cfg
`, lanMAC(i), repMAC(i), ReplIP(i), diskSetup, cpus, sock, GuestName, GuestIP, GuestMAC, GuestName)
}

// Unpinned reports whether RESILIRE_XEN_UNPINNED asks for the rig's old
// CPU layout, for the diagnostic: dom0 on every pCPU and the guest
// sharing one with it, where guests crash now and then under nested TCG.
func Unpinned() bool { return os.Getenv("RESILIRE_XEN_UNPINNED") != "" }

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
	return poll(ctx, limit, time.Second, "guest's kv service not up", func() error {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		c, err := r.Dial(dctx, "tcp", GuestAddr())
		if err == nil {
			c.Close()
		}
		return err
	})
}

// poll calls try every interval until it succeeds, ctx ends or limit
// passes; then the error names what and try's last error.
func poll(ctx context.Context, limit, every time.Duration, what string, try func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %v: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
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
