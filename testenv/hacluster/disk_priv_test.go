// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// soakN is $RESILIRE_SOAK_N (default def).
func soakN(t *testing.T, def int) int {
	t.Helper()
	v := os.Getenv("RESILIRE_SOAK_N")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("RESILIRE_SOAK_N=%q", v)
	}
	return n
}

// TestE2EDiskHostKill kills the primary host at random moments while the
// guest's database serves bank transfers from its replicated ext4 disk
// (and the kv client runs on its TCP connection): every acknowledged
// transfer is in the resumed guest's database and in the database read
// from the backup's image, the balance total is unchanged, SQLite's
// integrity check passes on both, and the image passes e2fsck -fn after
// its journal is replayed. RESILIRE_SOAK_N sets the number of kills
// (default 3; `make soak` runs SOAK_N).
func TestE2EDiskHostKill(t *testing.T) {
	requireVM(t)
	for i := range soakN(t, 3) {
		ok := t.Run("kill"+strconv.Itoa(i), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c := setup(t, ctx, Options{Disk: true, InputReplay: true})
			r, err := KillDuring(ctx, c, KillOptions{KillAfter: killPhase(), After: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			checkSafeKill(t, "", r)
			b := r.Bank
			t.Logf("bank: %d acknowledged (%d after the kill), %d unresolved, %d in the database, sum %d, integrity %q",
				len(b.Load.Acked), b.AckedAfterKill, len(b.Load.Unresolved), len(b.Audit.Transfers), b.Audit.Sum, b.Audit.Integrity)
			if !b.Safe() {
				t.Fatalf("bank violations: live %q, image %q", b.Violations, b.Image)
			}
			if b.AckedAfterKill == 0 {
				t.Fatal("no transfer acknowledged after the kill: the database never served again")
			}
		})
		if !ok {
			break
		}
	}
}

// TestE2EUnsafeNoDiskReplication is the negative control: the same kill
// with the disk served but not replicated. The backup's disk is then the
// one the guest never wrote, which the checks must report.
func TestE2EUnsafeNoDiskReplication(t *testing.T) {
	requireVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := setup(t, ctx, Options{Disk: true, InputReplay: true, UnsafeNoDiskReplication: true})
	r, err := KillDuring(ctx, c, KillOptions{KillAfter: killPhase(), After: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b := r.Bank
	t.Logf("unsafe: live violations %q; image %q", b.Violations, b.Image)
	if b.Safe() || r.Safe() {
		t.Fatal("no violation reported without disk replication: the checker cannot tell")
	}
	if !strings.Contains(strings.Join(b.Image, " "), "bank.db") {
		t.Errorf("the image check did not name the missing database: %q", b.Image)
	}
}
