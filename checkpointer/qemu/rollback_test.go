// SPDX-License-Identifier: Apache-2.0

package qemu_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest/kv"
)

// TestRollBackInPlace measures VDEchp's two ways of rolling back a group
// member whose primary is alive, on the same guest in one run:
//
//   - pushing the replica back: the guest, running ahead of checkpoint E
//     (acknowledged writes the group must undo), is stopped; the pages it
//     wrote since E are read from the backup's replica and written into its
//     RAM file, and its QEMU relaunched there with E's device state
//     (Relaunch). The RAM must then equal the replica byte for byte, the kv
//     store hold exactly E, and the pair stay in sync: the relaunched guest
//     is protected again with no copy, by dirty logging alone;
//   - resuming on the backup: that protected guest's host is then killed
//     and the warm standby activated from the last checkpoint, whose state
//     the store must hold too (which also proves the replica right after
//     the push-back).
func TestRollBackInPlace(t *testing.T) {
	testenv.RequirePrivileged(t)
	if testing.Short() {
		t.Skip("boots a VM")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := newPair(t, ctx, "rb-")
	rig, pcfg, vm, cl, dom, replica, sb := p.rig, p.pcfg, p.vm, p.cl, p.dom, p.replica, p.sb
	defer cl.Close()
	var err error
	if err := cl.Dirty(100); err != nil { // 100 pages per 10 ms
		t.Fatal(err)
	}

	acked := map[string]string{}
	var counter int64
	// protect runs n checkpoints of d into the replica under kv writes and
	// returns the last one's device state.
	protect := func(cl *kv.Client, d *qemu.Domain, tag string, n int) []byte {
		t.Helper()
		var state []byte
		for e := range n {
			for j := range 5 {
				k, v := fmt.Sprintf("%s%d-%d", tag, e, j), fmt.Sprintf("v%d", e*10+j)
				if _, err := cl.Set(k, v); err != nil {
					t.Fatal(err)
				}
				acked[k] = v
			}
			if counter, err = cl.Incr("counter"); err != nil {
				t.Fatal(err)
			}
			ck, err := takeCheckpoint(ctx, d, nil)
			if err != nil {
				t.Fatalf("%s epoch %d: %v", tag, e, err)
			}
			ck.apply(replica.Memory())
			state = ck.state
			if e == 0 {
				t.Logf("%s: first checkpoint %d pages", tag, len(ck.pfns))
			}
			time.Sleep(20 * time.Millisecond)
		}
		return state
	}
	// runAhead makes acknowledged writes after the last checkpoint, which
	// the rollback must undo, and lets the guest dirty memory for 200 ms.
	runAhead := func(cl *kv.Client, prefix string) {
		t.Helper()
		for j := range 3 {
			if _, err := cl.Set(fmt.Sprintf("%s%d", prefix, j), "lost"); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Incr("counter"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	stateE := protect(cl, dom, "a", 10)
	wantE, err := cl.Stats()
	if err != nil {
		t.Fatal(err)
	}
	runAhead(cl, "ahead-")

	// 1. Push the replica back.
	order := time.Now()
	if err := dom.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	pfns, err := dom.HarvestDirty(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	pages := make([]byte, len(pfns)*qemu.PageSize)
	mem := replica.Memory()
	for i, pfn := range pfns {
		copy(pages[i*qemu.PageSize:], mem[pfn*qemu.PageSize:(pfn+1)*qemu.PageSize])
	}
	if err := dom.Close(); err != nil {
		t.Fatal(err)
	}
	pushed := time.Since(order)
	rb, err := qemu.Relaunch(ctx, vm, pfns, pages)
	if err != nil {
		t.Fatal(err)
	}
	vm2 := rb.VM()
	t.Cleanup(func() {
		if err := vm2.Kill(); err != nil {
			t.Error(err)
		}
	})
	relaunched := time.Since(order)
	ram, err := os.ReadFile(pcfg.MemPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ram, replica.Memory()) {
		t.Fatalf("after the push-back the RAM differs from the replica in %d pages", diffPages(ram, replica.Memory()))
	}
	checked := time.Since(order) // the comparison is the test's, not the rollback's: not counted
	dom2, err := qemu.NewDomain(vm2, qemu.DomainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dom2.Close()
	if err := dom2.EnableDirtyLog(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rb.Activate(ctx, stateE); err != nil {
		t.Fatalf("activate the relaunched guest: %v (stderr: %s)", err, vm2.Stderr())
	}
	toCont := time.Since(order) - (checked - relaunched)
	cl.Close()
	cl2, err := dialUntil(ctx, rig, 10*time.Second)
	if err != nil {
		t.Fatalf("guest unreachable after the push-back: %v", err)
	}
	defer cl2.Close()
	got, err := cl2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	toReply := time.Since(order) - (checked - relaunched)
	checkRolledBack(t, "push-back", cl2, got, wantE, acked, "ahead-", 3, counter)
	counter++

	// 2. The pair is in sync: the relaunched guest is protected again by
	// dirty logging alone, which starts before it runs.
	if err := cl2.Dirty(100); err != nil {
		t.Fatal(err)
	}
	stateF := protect(cl2, dom2, "b", 5)
	wantF, err := cl2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	runAhead(cl2, "lost-")

	// 3. Resume on the backup instead.
	killed := time.Now()
	if err := vm2.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := sb.Activate(ctx, stateF); err != nil {
		t.Fatalf("activate standby: %v (stderr: %s)", err, sb.VM().Stderr())
	}
	killToCont := time.Since(killed)
	cl3, err := dialUntil(ctx, rig, 10*time.Second)
	if err != nil {
		t.Fatalf("guest unreachable after failover: %v", err)
	}
	defer cl3.Close()
	got, err = cl3.Stats()
	if err != nil {
		t.Fatal(err)
	}
	killToReply := time.Since(killed)
	checkRolledBack(t, "resume on the backup", cl3, got, wantF, acked, "lost-", 3, counter)

	t.Logf("push-back: %d pages (%d KiB of %d MiB) written since the checkpoint; stop+harvest+read %v, relaunch %v, to running %v, to first reply %v",
		len(pfns), len(pages)>>10, dom2.MemorySize()>>20, pushed.Round(100*time.Microsecond), (relaunched - pushed).Round(100*time.Microsecond),
		toCont.Round(100*time.Microsecond), toReply.Round(100*time.Microsecond))
	t.Logf("resume on the backup (warm standby): to running %v, to first reply %v; then the guest needs a new backup (a full copy of %d MiB)",
		killToCont.Round(100*time.Microsecond), killToReply.Round(100*time.Microsecond), dom2.MemorySize()>>20)
}
