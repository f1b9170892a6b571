// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"bytes"
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/qemu"
	"github.com/resilire/resilire/testenv"
	"github.com/resilire/resilire/testenv/guest/kv"
)

// TestE2EScrubCatchesUnseenWrite protects the real guest with exact dirty
// tracking and a scrub every 5 epochs. Positive control: while the guest's
// CPU dirties memory and a client writes over virtio-net, two scrubs in a
// row find the replica equal to the primary. Negative control: a write the
// tracker cannot see by design (pwrite on QEMU's RAM file, as a balloon or
// a vhost-user backend would write) is planted in a page the guest never
// uses (0xB0000, in the legacy VGA hole Linux reserves); the next scrub
// must raise the alarm on both agents naming that page, and, the page
// re-sent, a later scrub must be clean again.
func TestE2EScrubCatchesUnseenWrite(t *testing.T) {
	requireVM(t)
	testenv.RequireFeature(t, "exact dirty tracking (PAGEMAP_SCAN, userfaultfd write-protect async)", qemu.ProbeExactKernel())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := setup(t, ctx, Options{ProtectFlags: []string{"--dirty-tracking", "uffd-wp", "--scrub-every", "5"}})
	conn, err := c.Dial(ctx, "tcp", c.GuestAddr())
	if err != nil {
		t.Fatal(err)
	}
	cl := kv.NewClient(conn)
	defer cl.Close()
	cl.Timeout = 10 * time.Second
	if err := cl.Dirty(100); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	var first uint64
	if err := c.Protect().WaitStatus(ctx, 30*time.Second, func(s Status) bool {
		if s.Scrub == nil {
			return false
		}
		if s.Scrub.Result != "ok" {
			t.Fatalf("scrub before any planted write: %+v", s.Scrub)
		}
		if first == 0 {
			first = s.Scrub.Epoch
		}
		return s.Scrub.Epoch != first
	}); err != nil {
		t.Fatal(err)
	}
	if s, _ := c.Protect().Status(ctx); s.DirtyTracking == nil || s.DirtyTracking.Mechanism != qemu.TrackUffd {
		t.Fatalf("protect's dirty tracking: %+v", s.DirtyTracking)
	}

	const planted = 0xB0000 / qemu.PageSize
	f, err := os.OpenFile(c.CfgA.MemPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 64), planted*qemu.PageSize); err != nil {
		t.Fatal(err)
	}
	var caught uint64
	if err := c.Protect().WaitStatus(ctx, 30*time.Second, func(s Status) bool {
		if s.Scrub != nil && s.Scrub.Result == "diverged" {
			if !slices.Equal(s.Scrub.Pages, []uint64{planted}) {
				t.Fatalf("scrub named pages %v, want [%d]", s.Scrub.Pages, planted)
			}
			caught = s.Scrub.Epoch
			return true
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	b, err := c.Standby().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Scrub == nil || b.Scrub.Result != "diverged" || b.Scrub.Epoch != caught {
		t.Errorf("standby's scrub status %+v, want diverged at epoch %d", b.Scrub, caught)
	}
	if err := c.Protect().WaitStatus(ctx, 30*time.Second, func(s Status) bool {
		return s.Scrub != nil && s.Scrub.Epoch > caught && s.Scrub.Result == "ok"
	}); err != nil {
		t.Fatalf("no clean scrub after the repair: %v", err)
	}
	t.Logf("scrubs clean at epochs %d.., planted page %d named at epoch %d, clean again after the repair", first, planted, caught)
}
