// SPDX-License-Identifier: Apache-2.0

// Package xbank is the group test's distributed workload (VDEchp, issue
// 13): every guest of a group holds a balance and keeps sending random
// transfers to the others, over TCP: the sender debits, the receiver
// credits once (by transfer id) and acknowledges. The group's total is
// constant, counting transfers sent but not yet credited. Beside it runs
// a token ring (token.go): exactly one token passes from guest to guest.
//
// The transfers are nondeterministic (their id, amount and target come
// from the guest's clock), as a real application's are: a guest resumed
// from a checkpoint does not send again what it sent after that
// checkpoint. So a credit kept by a guest whose sender rolled back to
// before the debit (an orphan) stays visible: a credit no member sent,
// and a total above the initial one. Check finds it.
package xbank

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

const (
	// Port serves the audit (the test's client, outside the group).
	Port = 7300
	// PeerPort carries the credits between the guests.
	PeerPort = 7301
	// Initial is every guest's starting balance.
	Initial = 1_000_000
	// CmdlineKey starts the workload: guest.xbank=<index>:<ip0>,<ip1>,...
	CmdlineKey = "guest.xbank="
	// ReadyLine is printed on the console once the guest serves.
	ReadyLine = "XBANK READY"
)

// Config is one guest's place in the group.
type Config struct {
	Index int
	Peers []netip.Addr // every member's address, this guest's included
	// UDP sends each credit once, in a datagram, never again and never
	// acknowledged: a credit lost in transit stays lost (TCP would send
	// it again), which is what the group's in-transit log must prevent.
	UDP bool
}

// Cmdline is the kernel command-line argument for c.
func (c Config) Cmdline() string {
	s := make([]string, len(c.Peers))
	for i, p := range c.Peers {
		s[i] = p.String()
	}
	arg := fmt.Sprintf("%s%d:%s", CmdlineKey, c.Index, strings.Join(s, ","))
	if c.UDP {
		arg += ":udp"
	}
	return arg
}

// ParseCmdline finds the workload's argument in a kernel command line;
// ok is false without one.
func ParseCmdline(cmdline string) (c Config, ok bool, err error) {
	for _, f := range strings.Fields(cmdline) {
		v, found := strings.CutPrefix(f, CmdlineKey)
		if !found {
			continue
		}
		idx, peers, found := strings.Cut(v, ":")
		if !found {
			return c, true, fmt.Errorf("%s%s: want <index>:<ip>,<ip>,...[:udp]", CmdlineKey, v)
		}
		if p, udp := strings.CutSuffix(peers, ":udp"); udp {
			peers, c.UDP = p, true
		}
		if c.Index, err = strconv.Atoi(idx); err != nil {
			return c, true, fmt.Errorf("%s index %q: %w", CmdlineKey, idx, err)
		}
		for _, p := range strings.Split(peers, ",") {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return c, true, fmt.Errorf("%s peer: %w", CmdlineKey, err)
			}
			c.Peers = append(c.Peers, a)
		}
		if len(c.Peers) < 2 || c.Index < 0 || c.Index >= len(c.Peers) {
			return c, true, fmt.Errorf("%s%s: index %d of %d peers", CmdlineKey, v, c.Index, len(c.Peers))
		}
		return c, true, nil
	}
	return c, false, nil
}

// Transfer is one debit, sent to guest To.
type Transfer struct {
	ID     uint64 `json:"id"`
	To     int    `json:"to"`
	Amount int64  `json:"amount"`
	// At is when the guest debited it (its clock, Unix nanoseconds).
	At int64 `json:"at"`
}

// Audit is one guest's books.
type Audit struct {
	Index    int              `json:"index"`
	Balance  int64            `json:"balance"`
	Sent     []Transfer       `json:"sent"`
	Received map[uint64]int64 `json:"received"` // transfer id -> amount credited
	Pending  int              `json:"pending"`  // sent, not yet acknowledged by the receiver
	Paused   bool             `json:"paused"`
	// RTTs are recent transfers' round trips (send to the receiver's
	// acknowledgement): [acknowledged at, Unix ms; round trip, µs], by the
	// guest's clock.
	RTTs [][2]int64 `json:"rtts,omitempty"`
	// Token is the guest's part of the token ring.
	Token Token `json:"token"`
}

// Check returns every violation of the group's books (empty: consistent):
// the total of the balances plus the transfers sent but not credited must
// be n*Initial, every credit must match a transfer some guest sent (else
// its sender rolled back past the debit: an orphan), with the same amount
// and target. settled says nothing is in flight any more (the guests were
// paused and drained): a transfer sent but not credited was then lost.
func Check(audits []Audit, settled bool) []string {
	var v []string
	n := len(audits)
	sent := map[uint64]Transfer{}
	from := map[uint64]int{}
	lost, lostExample := 0, ""
	var total int64
	for i, a := range audits {
		if a.Index != i {
			v = append(v, fmt.Sprintf("audit %d is guest %d's", i, a.Index))
		}
		total += a.Balance
		for _, t := range a.Sent {
			if _, dup := sent[t.ID]; dup {
				v = append(v, fmt.Sprintf("transfer %#x sent twice", t.ID))
			}
			sent[t.ID], from[t.ID] = t, i
		}
	}
	for _, t := range sent {
		if t.To < 0 || t.To >= n || t.To == from[t.ID] {
			v = append(v, fmt.Sprintf("transfer %#x to guest %d", t.ID, t.To))
			continue
		}
		if _, ok := audits[t.To].Received[t.ID]; !ok {
			total += t.Amount // in flight
			if lost++; settled && lost == 1 {
				lostExample = fmt.Sprintf("guest %d debited transfer %#x (%d) that guest %d never credited", from[t.ID], t.ID, t.Amount, t.To)
			}
		}
	}
	if settled && lost > 0 {
		v = append(v, fmt.Sprintf("%d transfers lost, e.g. %s", lost, lostExample))
	}
	orphans := 0
	var example string
	for i, a := range audits {
		for id, amount := range a.Received {
			t, ok := sent[id]
			if !ok || t.To != i || t.Amount != amount {
				if orphans++; orphans == 1 {
					example = fmt.Sprintf("guest %d credited transfer %#x (%d) that no guest sent to it", i, id, amount)
				}
			}
		}
	}
	if orphans > 0 {
		v = append(v, fmt.Sprintf("%d orphan credits, e.g. %s", orphans, example))
	}
	if want := int64(n) * Initial; total != want {
		v = append(v, fmt.Sprintf("group total %d, want %d (%+d)", total, want, total-want))
	}
	return append(v, CheckToken(audits, settled)...)
}
