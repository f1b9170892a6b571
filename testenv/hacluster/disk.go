// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/resilire/resilire/testenv/guest/bank"
)

// DefaultDiskMiB is the guest disk's size when Options.DiskMiB is 0.
const DefaultDiskMiB = 64

// prepareDisks makes host-a's image (a fresh ext4, as an installer would
// leave it) and host-b's (a copy: the standby's disk before it ever met
// this primary, which the initial synchronisation then overwrites), and
// points both QEMUs at their agent's export.
func (c *Cluster) prepareDisks(ctx context.Context) error {
	mib := c.Opts.DiskMiB
	if mib == 0 {
		mib = DefaultDiskMiB
	}
	c.ImgA, c.ImgB = filepath.Join(c.RunDir, "host-a.img"), filepath.Join(c.RunDir, "host-b.img")
	if err := os.WriteFile(c.ImgA, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(c.ImgA, int64(mib)<<20); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-b", "4096",
		"-E", "lazy_itable_init=0,lazy_journal_init=0", c.ImgA).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %w: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", c.ImgA, c.ImgB).CombinedOutput(); err != nil {
		return fmt.Errorf("copy image: %w: %s", err, out)
	}
	for _, cfg := range []*struct {
		sock *string
		app  *string
		name string
	}{{&c.CfgA.DiskSocket, &c.CfgA.Append, "a-disk.sock"}, {&c.CfgB.DiskSocket, &c.CfgB.Append, "b-disk.sock"}} {
		*cfg.sock = filepath.Join(c.RunDir, cfg.name)
		*cfg.app += " " + bank.Cmdline
	}
	c.logf("disk: %d MiB ext4 images %s, %s", mib, c.ImgA, c.ImgB)
	return nil
}

// waitConsole waits for line on a guest console file, failing early if
// the protect agent (which owns the guest's disk) exits.
func (c *Cluster) waitConsole(ctx context.Context, path, line string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	want := []byte(line)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, want) {
			return nil
		}
		exited := false
		if c.protect != nil {
			select {
			case <-c.protect.Exited():
				exited = true
			default:
			}
		}
		if exited {
			return fmt.Errorf("protect exited before the guest printed %q; console: %q", line, tail(b, 1))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q on %s: %w; console: %q", line, path, ctx.Err(), tail(b, 1))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// BankAddr is the guest's bank server, host:port.
func (c *Cluster) BankAddr() string {
	return net.JoinHostPort(c.Rig.GuestAddr.Addr().String(), strconv.Itoa(bank.Port))
}

// BankResult is what the bank workload showed across one host kill.
type BankResult struct {
	Load  bank.LoadResult
	Audit bank.Audit
	// Violations are the live guest's: lost acknowledged transfers, a
	// changed balance total, a failed integrity check, an audit error.
	Violations []string
	// Image are the backup image's own: e2fsck after the ext4 journal is
	// replayed, and the database read from the image by the host.
	Image []string
	// AckedAfterKill counts transfers acknowledged after the kill.
	AckedAfterKill int
}

// Safe reports no violation, live or on the image.
func (r *BankResult) Safe() bool { return len(r.Violations) == 0 && len(r.Image) == 0 }

// bankRun is the bank load running from the client namespace.
type bankRun struct{ *bank.Background }

// startBank starts conns bank clients against the guest.
func (c *Cluster) startBank(ctx context.Context, conns int, every time.Duration) *bankRun {
	return &bankRun{bank.Start(ctx, bank.LoadOptions{Dial: c.Dial, Addr: c.BankAddr(), Conns: conns, Every: every})}
}

// finish stops the load, audits the resumed guest, then stops it (kill -9
// of the QEMU in pidFile, as a crash) and checks img, the survivor's disk.
func (b *bankRun) finish(ctx context.Context, c *Cluster, killed time.Time, pidFile, img string) (*BankResult, error) {
	r, err := LiveBankResult(b.Stop(), killed, func() (bank.Audit, error) {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return audit(actx, c)
	})
	if err != nil {
		return nil, err
	}
	if err := killPidFile(pidFile); err != nil {
		return nil, err
	}
	if r.Image, err = CheckBackupImage(ctx, img, c.RunDir, r.Load); err != nil {
		return nil, err
	}
	return r, nil
}

// LiveBankResult is what load showed across a fault at fault, checked
// against an audit of the guest now running (audit): bank.Check's
// violations, or the audit's failure. A load with no acknowledged
// transfer is an error: it shows nothing. The image is the caller's to
// check.
func LiveBankResult(load bank.LoadResult, fault time.Time, audit func() (bank.Audit, error)) (*BankResult, error) {
	r := &BankResult{Load: load}
	if len(load.Acked) == 0 {
		return nil, errors.New("bank load: no transfer acknowledged")
	}
	for _, at := range load.AckedAt {
		if at.After(fault) {
			r.AckedAfterKill++
		}
	}
	a, err := audit()
	if err != nil {
		r.Violations = append(r.Violations, "audit of the resumed guest failed: "+err.Error())
		return r, nil
	}
	r.Audit = a
	r.Violations = append(r.Violations, bank.Check(load, a)...)
	return r, nil
}

func audit(ctx context.Context, c *Cluster) (bank.Audit, error) {
	return bank.AuditAt(ctx, c.Dial, c.BankAddr())
}

// CheckBackupImage checks the backup's disk image after a failover, with
// the guest stopped: on a copy, the ext4 journal is replayed (what the
// guest's next mount does) and e2fsck -fn must then pass; the database is
// copied out of the file system (debugfs) and read by the host's own
// SQLite, which must pass its integrity check and bank.Check against the
// load. It returns the violations found; err is a failure to check.
func CheckBackupImage(ctx context.Context, img, workDir string, load bank.LoadResult) (violations []string, err error) {
	cp := filepath.Join(workDir, "check.img")
	defer os.Remove(cp)
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", img, cp).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy %s: %w: %s", img, err, out)
	}
	if out, err := exec.CommandContext(ctx, "e2fsck", "-E", "journal_only", "-y", cp).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 { // 1: the journal was replayed
			return []string{fmt.Sprintf("ext4 journal replay failed (%v): %s", err, tail(out, 8))}, nil
		}
	}
	if out, err := exec.CommandContext(ctx, "e2fsck", "-fn", cp).CombinedOutput(); err != nil {
		violations = append(violations, fmt.Sprintf("e2fsck -fn after journal replay: %v: %s", err, tail(out, 8)))
	}
	dump := filepath.Join(workDir, "check.dump")
	defer os.RemoveAll(dump)
	if err := os.MkdirAll(dump, 0o700); err != nil {
		return nil, err
	}
	for _, f := range []string{bank.File, bank.File + "-wal"} {
		out, err := exec.CommandContext(ctx, "debugfs", "-R", "dump -p /"+f+" "+filepath.Join(dump, f), cp).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("debugfs dump %s: %w: %s", f, err, out)
		}
	}
	db := filepath.Join(dump, bank.File)
	if _, err := os.Stat(db); err != nil {
		return append(violations, "no "+bank.File+" on the image"), nil
	}
	a, err := bank.AuditFile(db)
	if err != nil {
		return append(violations, "the image's database does not open: "+err.Error()), nil
	}
	for _, v := range bank.Check(load, a) {
		violations = append(violations, "image: "+v)
	}
	return violations, nil
}

// tail is the last n lines of a console or a tool's output.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\r\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
