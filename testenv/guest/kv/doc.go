// SPDX-License-Identifier: Apache-2.0

// Package kv is the guest workload: a key-value store served over TCP with
// a one-line-per-request protocol, and a client for it. The guest's /init
// serves it on :7000; tests talk to it from a client network namespace and
// check, after a failover, that the store holds exactly the state of the
// last checkpoint.
//
// Requests and replies are single lines ending in "\n":
//
//	SET k v   -> OK <seq>     (v is the rest of the line; acked after applying)
//	GET k     -> <value>      (ERR not found for a missing key)
//	INCR k    -> <new value>  (a missing key counts as 0)
//	DIRTY n   -> OK           (background dirtier: n pages per 10 ms, 0 = off)
//	STATS     -> keys=<n> seq=<s> dirty=<n> dirtied=<pages>
//
// seq counts applied writes (SET and INCR) since boot. Errors start "ERR ".
package kv
