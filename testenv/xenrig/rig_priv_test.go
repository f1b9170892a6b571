// SPDX-License-Identifier: Apache-2.0

package xenrig

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/testenv/guest"
)

// The Xen driver's own real-hypervisor tests, run in a dom0 of the rig
// against the test guest as a PVH domU: open it, checkpoint it for ten
// epochs by cooperative suspend and fast resume, destroy it, restore it
// with xl from the driver's image, and require that the restored guest
// runs. Here the rig also requires that it still serves its clients: the
// kv service answers over the LAN after the restore.
func TestXenDriverOnRealXen(t *testing.T) {
	Require(t)
	ctx := context.Background()
	r := New(t, ctx, Options{Hosts: 1, Files: map[string]string{"xen.test": buildXenTest(t)}})
	h := r.Hosts[0]
	if err := r.StartGuest(ctx, h); err != nil {
		r.LogConsoles(t)
		t.Fatal(err)
	}
	out, err := h.Run(ctx, 5*time.Minute, "cd /tmp && RESILIRE_TEST_PRIVILEGED=1 RESILIRE_XEN_DOMAIN="+GuestName+
		" RESILIRE_XEN_RESTORE_CFG=/etc/resilire/"+GuestName+".cfg /share/xen.test -test.v -test.count=1 -test.run 'TestReal|TestOpen'")
	t.Logf("in dom0:\n%s", out)
	if err != nil {
		r.LogConsoles(t)
		t.Fatal(err)
	}
	for _, want := range []string{"--- PASS: TestRealDomain", "--- PASS: TestRealSuspendRefused", "--- PASS: TestRealSaveRestore"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dom0 run lacks %q", want)
		}
	}
	if err := r.WaitGuest(ctx, time.Minute); err != nil {
		r.LogConsoles(t)
		t.Fatalf("restored guest: %v", err)
	}

	// A PV guest (the same kernel and initramfs as type "pv") is refused
	// by protect at once, with the reason, before any session starts.
	if _, err := h.Run(ctx, 3*time.Minute, "sed -e 's/^type = .*/type = \"pv\"/' -e 's/^name = .*/name = \"gpv\"/' -e '/^vif/d' "+
		"/etc/resilire/"+GuestName+".cfg > /etc/resilire/gpv.cfg && xl create /etc/resilire/gpv.cfg"); err != nil {
		t.Fatal(err)
	}
	out, err = h.Run(ctx, time.Minute, "resilire protect --vm gpv --domain xen --backup 127.0.0.1:9 --metrics-addr '' 2>&1; echo exit=$?")
	t.Logf("protect of a PV guest:\n%s", out)
	if err != nil || !strings.Contains(out, "is PV") || !strings.Contains(out, "unsupported guest type") || strings.Contains(out, "exit=0") {
		t.Fatalf("protect of a PV guest was not refused with its reason: %v", err)
	}

	// So is an HVM guest with its device model (QEMU in dom0): QEMU's
	// device state and its writes to guest memory are not captured.
	if _, err := h.Run(ctx, 3*time.Minute, "xl destroy gpv && cat > /etc/resilire/ghvm.cfg <<'CFG'\n"+HVMGuestConfig("ghvm")+"\nCFG\nxl create /etc/resilire/ghvm.cfg"); err != nil {
		t.Fatal(err)
	}
	out, err = h.Run(ctx, time.Minute, "xl list ghvm | tail -1; resilire protect --vm ghvm --domain xen --backup 127.0.0.1:9 --metrics-addr '' 2>&1; echo exit=$?")
	t.Logf("protect of an HVM guest:\n%s", out)
	if err != nil || !strings.Contains(out, "is HVM with emulated devices") || !strings.Contains(out, "only PVH guests") || strings.Contains(out, "exit=0") {
		t.Fatalf("protect of an HVM guest was not refused with its reason: %v", err)
	}
}

// The product end to end on real Xen: the guest, a PVH domU on xen1, is
// protected to xen2 with the eBPF output commit on its vif (clsact and
// redirect on dom0's 6.1 kernel); xen1 dies under client load (kill -9 of
// its QEMU); xen2 restores the guest from the last committed checkpoint.
// The client loses no acknowledged write, never sees a reply rolled back,
// and keeps its TCP connection.
func TestXenHostKill(t *testing.T) { testXenFault(t, HostKill) }

// The primary's agent dies (kill -9) while host and guest live on: the
// pinned BPF program keeps holding the guest's output (fail closed), the
// standby fences (the test destroys the old guest) and takes over.
func TestXenAgentCrash(t *testing.T) { testXenFault(t, AgentCrash) }

// The replication link is cut: the primary holds output (block policy),
// the standby fences and takes over; nothing the client saw is lost.
func TestXenPartition(t *testing.T) { testXenFault(t, Partition) }

// The guest with a disk on real Xen: its image is served by protect over
// NBD (dom0's kernel client, then blkback: deploy/xen/block-resilire),
// protect creates it (paused, its vif held, unpaused), and it runs a
// SQLite bank on ext4 on that disk next to the kv store. xen1 dies under
// both loads; xen2 restores the guest with its replica of the disk served
// the same way. No acknowledged transfer is lost, the balances still sum
// up, SQLite's integrity check passes, and the kv checks hold as above.
func TestXenDiskHostKill(t *testing.T) {
	_, res := testXenFaultWith(t, Options{Disk: true}, FailoverOptions{Fault: HostKill})
	if !res.Bank.Safe() {
		t.Fatalf("the bank's invariants broke: live %v, image %v", res.Bank.Violations, res.Bank.Image)
	}
	if before := len(res.Bank.Load.Acked) - res.Bank.AckedAfterKill; before < minBankAcked || res.Bank.AckedAfterKill == 0 {
		t.Fatalf("bank transfers acknowledged: %d before the fault, %d after: the disk was not shown to work on both hosts",
			before, res.Bank.AckedAfterKill)
	}
}

// The disk's negative control: the same run with the disk served on both
// hosts but never replicated (--unsafe-no-disk-replication on both
// agents) must break the bank's invariants on xen2, whose disk is still
// the empty file system it started with: on the image once the guest is
// gone, if its page cache hides it from the live audit.
func TestXenUnsafeNoDiskReplication(t *testing.T) {
	_, res := runFailover(t, Options{Disk: true}, FailoverOptions{UnsafeNoDiskReplication: true})
	if res.Bank == nil || res.Bank.Safe() {
		t.Fatal("unsafe run broke no invariant of the bank: the disk check cannot fail")
	}
	t.Logf("violation reported as expected: live %v, image %v", res.Bank.Violations, res.Bank.Image)
}

func testXenFault(t *testing.T, fault Fault) {
	testXenFaultWith(t, Options{}, FailoverOptions{Fault: fault})
}

func testXenFaultWith(t *testing.T, ropts Options, opts FailoverOptions) (*Rig, *FailoverResult) {
	r, res := runFailover(t, ropts, opts)
	if len(res.Lost) > 0 || res.Load.Inconsistent > 0 {
		t.Fatalf("%d acknowledged writes lost (%v), %d replies rolled back", len(res.Lost), res.Lost, res.Load.Inconsistent)
	}
	if res.Load.Reconnects > 0 {
		t.Fatalf("the client reconnected %d times: its TCP connection did not survive", res.Load.Reconnects)
	}
	if st, err := AgentStatus(context.Background(), r.Hosts[1]); err != nil || st.State != "active" {
		t.Fatalf("standby status %+v, %v", st, err)
	}
	return r, res
}

// The negative control: the same run with the output released at once
// (--unsafe-no-output-commit) must lose acknowledged writes or roll back
// replies the client saw. If it does not, the check above proves nothing.
// Its checkpoints are 2 s apart: under nested TCG the guest is suspended
// for most of a 200 ms epoch, so a kill rarely finds a reply the backup
// lacks (one run lost nothing); with 2 s, every kill does.
func TestXenUnsafeNoOutputCommit(t *testing.T) {
	_, res := runFailover(t, Options{}, FailoverOptions{UnsafeNoOutputCommit: true, Interval: 2 * time.Second})
	if len(res.Lost) == 0 && res.Load.Inconsistent == 0 {
		t.Fatalf("unsafe run lost nothing (%d acknowledged): the checker cannot fail", len(res.Load.Acked))
	}
	t.Logf("violation reported as expected: %d acknowledged writes lost, %d replies rolled back", len(res.Lost), res.Load.Inconsistent)
}

// runFailover boots a two-host rig (ropts), starts the guest on xen1 (with
// a disk, protect does) and runs one protected failover to xen2 with opts;
// a run that cannot complete fails the test with the guest's consoles and
// the hypervisors' logs.
func runFailover(t *testing.T, ropts Options, opts FailoverOptions) (*Rig, *FailoverResult) {
	Require(t)
	ctx := context.Background()
	r := New(t, ctx, ropts)
	if !ropts.Disk {
		if err := r.StartGuest(ctx, r.Hosts[0]); err != nil {
			r.LogConsoles(t)
			t.Fatal(err)
		}
	}
	res, err := r.Failover(ctx, 0, 1, opts)
	logFailover(t, res)
	if dir := os.Getenv("RESILIRE_XEN_DEMO_OUT"); dir != "" && res != nil && res.Load != nil {
		// make xen-demo: make demo's report (logged above) and timeline,
		// from real Xen, kept in dir.
		var rep strings.Builder
		res.Print(&rep)
		txt, png := filepath.Join(dir, "xen-demo-report.txt"), filepath.Join(dir, "xen-demo-timeline.png")
		if err := errors.Join(os.MkdirAll(dir, 0o755), os.WriteFile(txt, []byte(rep.String()), 0o644),
			res.Load.Plot(png, "kvload across the "+string(res.Fault)+" of xen1 (real Xen nested under QEMU TCG; one TCP connection)", res.Killed)); err != nil {
			t.Error(err)
		}
		t.Logf("report: %s, timeline: %s", txt, png)
	}
	if err != nil {
		r.LogConsoles(t)
		t.Fatal(err)
	}
	return r, res
}

func logFailover(t *testing.T, res *FailoverResult) {
	t.Helper()
	if res == nil {
		return
	}
	t.Logf("primary agent before the kill:\n%s\nstandby agent:\n%s", res.PrimaryLg, res.StandbyLg)
	if res.Load == nil {
		return
	}
	var total uint64
	for _, b := range res.HostRSS {
		total += b
	}
	t.Logf("hosts' QEMU peak RSS %v MiB, %d MiB in all", mib(res.HostRSS), total>>20)
	for i, m := range res.AgentMem {
		t.Logf("xen%d dom0 agents' memory before the fault: %s", i+1, m)
	}
	var rep strings.Builder
	res.Print(&rep)
	t.Logf("report:\n%s", rep.String())
}

func mib(b []uint64) []uint64 {
	out := make([]uint64, len(b))
	for i, v := range b {
		out[i] = v >> 20
	}
	return out
}

// buildXenTest compiles the Xen driver's tests with -tags xen, to run in a
// dom0.
func buildXenTest(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xen.test")
	cmd := exec.Command("go", "test", "-c", "-tags", "xen", "-o", bin, "./checkpointer/xen/")
	cmd.Dir = guest.ModuleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build xen.test: %v: %s", err, out)
	}
	return bin
}

// TestXenLogDirtySoak is a diagnostic of the nested hypervisor (opt in with
// RESILIRE_XEN_SOAK_S seconds). First the control: Xen's own Remus
// (`xl remus -F -b -n`, checkpoints to a blackhole every 100 ms) on the
// guest for that long; then, on a fresh guest, the driver's
// TestRealLogDirtySoak (log-dirty tracking alone, no suspend). Each part
// reports whether the guest survived it; a crash in either fails the test.
func TestXenLogDirtySoak(t *testing.T) {
	secs := os.Getenv("RESILIRE_XEN_SOAK_S")
	if secs == "" {
		t.Skip("RESILIRE_XEN_SOAK_S not set (a diagnostic, not a test of the product)")
	}
	Require(t)
	ctx := context.Background()
	r := New(t, ctx, Options{Hosts: 1, Files: map[string]string{"xen.test": buildXenTest(t)}})
	h := r.Hosts[0]
	if err := r.StartGuest(ctx, h); err != nil {
		r.LogConsoles(t)
		t.Fatal(err)
	}
	out, err := h.Run(ctx, 30*time.Minute, "timeout "+secs+" xl remus -F -b -n -i 100 "+GuestName+" blackhole 2>&1 | tail -8; "+
		"xl list "+GuestName+" | tail -1")
	if err != nil {
		t.Errorf("remus control: %v", err)
	}
	crashed := strings.Contains(out, "---sr-") || strings.Contains(out, "---sc-")
	t.Logf("xen's own remus for %ss (guest crashed: %v):\n%s", secs, crashed, out)
	if crashed {
		r.LogConsoles(t)
		t.Errorf("the guest crashed under Xen's own Remus: the nested hypervisor, not the driver")
	}
	if _, err := h.Run(ctx, time.Minute, "xl destroy "+GuestName); err != nil {
		t.Fatal(err)
	}
	if err := r.StartGuest(ctx, h); err != nil {
		r.LogConsoles(t)
		t.Fatal(err)
	}
	out, err = h.Run(ctx, 30*time.Minute, "cd /tmp && RESILIRE_TEST_PRIVILEGED=1 RESILIRE_XEN_DOMAIN="+GuestName+
		" RESILIRE_XEN_SOAK_S="+secs+" /share/xen.test -test.v -test.count=1 -test.run TestRealLogDirtySoak")
	t.Logf("the driver's log-dirty soak:\n%s", out)
	if err != nil {
		r.LogConsoles(t)
		t.Error(err)
	}
}
