// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

const (
	// Port is the TCP port of the server in the guest.
	Port = 7002
	// Cmdline is the kernel command line switch that turns the workload on.
	Cmdline = "guest.disk=bank"
	// ReadyLine is printed on the console by /init once the bank serves.
	ReadyLine = "BANK READY"
	// Accounts is the number of accounts.
	Accounts = 64
	// InitialBalance is each account's starting balance; the balances
	// always sum to Accounts*InitialBalance.
	InitialBalance = 1000
)

var (
	// ErrInsufficient is a transfer refused because the source account
	// holds less than the amount; nothing was applied.
	ErrInsufficient = errors.New("bank: insufficient funds")
	// ErrServer is an ERR reply: the server failed the request (malformed,
	// or a database error such as a disk I/O error). Whether a transfer
	// answered so committed is unknown.
	ErrServer = errors.New("bank: server error")
)

// DB is the bank's database. Its methods are safe for concurrent use: the
// single SQLite connection serialises them.
type DB struct {
	sql *sql.DB
	// wg counts Serve's connection handlers, so Close can wait for them.
	wg sync.WaitGroup
}

const schema = `
CREATE TABLE IF NOT EXISTS accounts (
	id      INTEGER PRIMARY KEY,
	balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS transfers (
	id     INTEGER PRIMARY KEY,
	src    INTEGER NOT NULL,
	dst    INTEGER NOT NULL,
	amount INTEGER NOT NULL
);`

// Open opens (creating if absent) the database at path, in WAL mode with
// synchronous=FULL so that every commit is fsync'd before it returns. A new
// database gets its schema and accounts in one transaction, so a crash
// during Open never leaves a half-funded bank.
func Open(path string) (_ *DB, err error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("bank: bad database path %q", path)
	}
	// The driver strips the query from a DSN that is not a file: URI and
	// runs these on every connection it opens.
	dsn := path + "?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate"
	s, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("bank: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// One connection: writes are serialised without SQLITE_BUSY, and the
	// pragmas above hold for every statement.
	s.SetMaxOpenConns(1)
	s.SetMaxIdleConns(1)
	s.SetConnMaxIdleTime(0)
	s.SetConnMaxLifetime(0)
	ctx := context.Background()
	var mode string
	if err := s.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("bank: open %s: %w", path, err)
	}
	var sync int
	if err := s.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return nil, fmt.Errorf("bank: open %s: %w", path, err)
	}
	if !strings.EqualFold(mode, "wal") || sync != 2 {
		return nil, fmt.Errorf("bank: open %s: journal_mode=%s synchronous=%d, want wal and 2 (FULL)", path, mode, sync)
	}
	if err := initSchema(ctx, s); err != nil {
		return nil, fmt.Errorf("bank: init %s: %w", path, err)
	}
	return &DB{sql: s}, nil
}

func initSchema(ctx context.Context, s *sql.DB) error {
	tx, err := s.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM accounts").Scan(&n); err != nil {
		return err
	}
	// An existing bank is left as it is, even a damaged one: Audit is what
	// reports it.
	if n == 0 {
		for i := range Accounts {
			if _, err := tx.ExecContext(ctx, "INSERT INTO accounts (id, balance) VALUES (?, ?)", i, InitialBalance); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// Close closes the database. Call it only after Serve has returned.
func (db *DB) Close() error {
	db.wg.Wait()
	return db.sql.Close()
}

// transfer applies one transfer as one transaction and reports whether it
// is committed (now, or earlier under the same id). It returns
// ErrInsufficient, with nothing applied, when src holds less than amount.
// Any other error leaves the outcome to the database: rolled back, or, if
// the commit itself failed, unknown.
func (db *DB) transfer(ctx context.Context, r request) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// SQLite integers are signed 64-bit: ids are stored bit for bit.
	id := int64(r.id)
	var one int
	switch err := tx.QueryRowContext(ctx, "SELECT 1 FROM transfers WHERE id = ?", id).Scan(&one); {
	case err == nil:
		return tx.Commit() // already committed: idempotent OK
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	var bal int64
	if err := tx.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = ?", r.src).Scan(&bal); err != nil {
		return err
	}
	if bal < r.amount {
		return ErrInsufficient
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE accounts SET balance = balance - ? WHERE id = ?", []any{r.amount, r.src}},
		{"UPDATE accounts SET balance = balance + ? WHERE id = ?", []any{r.amount, r.dst}},
		{"INSERT INTO transfers (id, src, dst, amount) VALUES (?, ?, ?, ?)", []any{id, r.src, r.dst, r.amount}},
	} {
		res, err := tx.ExecContext(ctx, q.sql, q.args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("%s: %d rows affected (%v)", q.sql, n, err)
		}
	}
	return tx.Commit()
}

// auditSummary is the audit's last line.
type auditSummary struct {
	sum       int64
	accounts  int
	transfers int
	integrity string
}

// audit calls id for every committed transfer and returns the summary, all
// read in one transaction so they agree with each other.
func (db *DB) audit(ctx context.Context, id func(uint64) error) (auditSummary, error) {
	var s auditSummary
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s, err
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	if err := tx.QueryRowContext(ctx, "SELECT coalesce(sum(balance), 0), count(*) FROM accounts").Scan(&s.sum, &s.accounts); err != nil {
		return s, err
	}
	// At most 100 problems: the reply is one bounded line.
	rows, err := tx.QueryContext(ctx, "PRAGMA integrity_check(100)")
	if err != nil {
		return s, err
	}
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			rows.Close()
			return s, err
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return s, err
	}
	s.integrity = oneLine(strings.Join(msgs, "; "), MaxLine/2)
	rows, err = tx.QueryContext(ctx, "SELECT id FROM transfers ORDER BY id")
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return s, err
		}
		if err := id(uint64(v)); err != nil {
			return s, err
		}
		s.transfers++
	}
	return s, rows.Err()
}

// oneLine makes s safe to send as (the end of) a reply line: no control
// characters, at most limit bytes.
func oneLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		s = s[:limit]
	}
	return strings.ToValidUTF8(s, "?")
}

// File is the database's file name under the guest's /data (the root of
// its disk's file system).
const File = "bank.db"

// AuditFile reads the database file at path (with its -wal beside it, as
// copied out of a disk image) the way Audit reads it from a live server.
// It never creates anything: a missing file is an error.
func AuditFile(path string) (Audit, error) {
	if _, err := os.Stat(path); err != nil {
		return Audit{}, fmt.Errorf("bank: %w", err)
	}
	s, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return Audit{}, fmt.Errorf("bank: open %s: %w", path, err)
	}
	defer s.Close()
	s.SetMaxOpenConns(1)
	a := Audit{Transfers: make(map[uint64]bool)}
	sum, err := (&DB{sql: s}).audit(context.Background(), func(id uint64) error { a.Transfers[id] = true; return nil })
	if err != nil {
		return Audit{}, fmt.Errorf("bank: audit %s: %w", path, err)
	}
	a.Sum, a.Accounts, a.Integrity = sum.sum, sum.accounts, sum.integrity
	return a, nil
}
