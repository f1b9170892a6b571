// SPDX-License-Identifier: Apache-2.0

// Package bank is the test guest's disk database workload: a bank-transfer
// service on an embedded SQLite database (modernc.org/sqlite, pure Go, so
// /init stays a static binary). With guest.disk=bank on the kernel command
// line, /init mounts /dev/vda (/dev/xvda on Xen) on /data, opens /data/bank.db and serves it on
// :7002 next to the kv server, printing "BANK READY" first.
//
// The database holds Accounts accounts of InitialBalance each and a table of
// committed transfers. A transfer is one SQLite transaction (funds check,
// both balance updates, the transfers row) committed with
// synchronous=FULL, so its OK reply is sent only once the commit is durable
// on the guest's disk. The invariants a failover must keep are checked by
// Check: every acknowledged transfer is in the database, the balances still
// sum to Accounts*InitialBalance, and SQLite's integrity check passes.
//
// Requests and replies are single lines ending in "\n" (at most MaxLine
// bytes); numbers are decimal:
//
//	T <id> <src> <dst> <amount>  -> OK <id>        committed (now or before: ids are idempotent)
//	                             -> NOFUNDS <id>   src's balance < amount; nothing applied
//	A                            -> I <id>         one line per committed transfer, then
//	                                END <sum> <accounts> <transfers> <integrity>
//
// Any failure (malformed request, database error) is answered "ERR <msg>",
// never OK; an ERR may also end an audit early.
package bank
