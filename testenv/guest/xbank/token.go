// SPDX-License-Identifier: Apache-2.0

package xbank

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The token ring runs beside the transfers: guest 0 creates one token at
// the first RESUME; a guest that takes the token (counter c from its
// predecessor) keeps it, holds it a while, then forwards counter c+1 to
// its successor, over the transfers' transport (TCP with resends and an
// acknowledgement, or one datagram). Exactly one token must exist at
// every consistent cut. Each pass carries a nonce from the sender's clock,
// so a token kept by a guest whose sender rolled back before sending it
// (an orphan) matches no pass the sender made, even when the resumed
// sender passes the same counter again.

// Hop is one pass of the token.
type Hop struct {
	Counter uint64 `json:"c"`
	Nonce   uint64 `json:"n"`
	// From is the sender's index; -1: the token was created here.
	From int `json:"f"`
}

// Token is one guest's part of the ring (Audit.Token).
type Token struct {
	// Last is the highest counter this guest took; Held says it still
	// has that token.
	Last uint64 `json:"last"`
	Held bool   `json:"held"`
	// Taken and Passed are the guest's passes of the token, received and
	// sent, oldest first (bounded: Truncated says older ones were
	// dropped).
	Taken     []Hop `json:"taken,omitempty"`
	Passed    []Hop `json:"passed,omitempty"`
	Truncated bool  `json:"truncated,omitempty"`
}

// hopKeep bounds each guest's pass logs.
const hopKeep = 100_000

// tokenState is a node's token, under Node.mu.
type tokenState struct {
	Token
	created bool
	heldAt  time.Time
	out     *Hop // TCP: passed, not yet acknowledged
}

func (t *tokenState) log(l *[]Hop, h Hop) {
	if *l = append(*l, h); len(*l) > hopKeep {
		*l = (*l)[len(*l)-hopKeep:]
		t.Truncated = true
	}
}

// successor and predecessor are the ring's neighbours of guest i.
func successor(i, n int) int   { return (i + 1) % n }
func predecessor(i, n int) int { return (i + n - 1) % n }

// createToken makes the ring's one token on guest 0 (under n.mu).
func (n *Node) createToken() {
	if n.cfg.Index != 0 || n.tok.created {
		return
	}
	n.tok.created = true
	h := Hop{Counter: 1, Nonce: mix(uint64(time.Now().UnixNano())), From: -1}
	n.tok.Last, n.tok.Held, n.tok.heldAt = 1, true, time.Now()
	n.tok.log(&n.tok.Taken, h)
}

// passToken forwards the token once it was held long enough.
func (n *Node) passToken() {
	n.mu.Lock()
	if n.paused || !n.tok.Held || time.Since(n.tok.heldAt) < 2*n.every {
		n.mu.Unlock()
		return
	}
	now := uint64(time.Now().UnixNano())
	h := Hop{Counter: n.tok.Last + 1, Nonce: mix(now ^ n.tok.Last<<40), From: n.cfg.Index}
	n.tok.Held = false
	n.tok.log(&n.tok.Passed, h)
	if !n.cfg.UDP {
		n.tok.out = &h
	}
	n.mu.Unlock()
	n.sendToken(h)
}

// tokenLine is the wire form of a pass.
func tokenLine(h Hop) string { return fmt.Sprintf("T %d %d %d\n", h.Counter, h.Nonce, h.From) }

// sendToken sends a pass to the successor: once in a datagram, or on the
// TCP link (sent again until acknowledged: resendToken).
func (n *Node) sendToken(h Hop) {
	to := successor(n.cfg.Index, len(n.cfg.Peers))
	if n.cfg.UDP {
		c, err := net.Dial("udp", n.links[to].addr)
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = fmt.Fprint(c, tokenLine(h))
		return
	}
	n.links[to].write(n, tokenLine(h))
}

// resendToken sends the unacknowledged pass again.
func (n *Node) resendToken() {
	n.mu.Lock()
	out := n.tok.out
	n.mu.Unlock()
	if out != nil {
		n.sendToken(*out)
	}
}

// takeToken applies one "T <counter> <nonce> <from>" line: a newer token
// from the predecessor is taken, an older one (a resend) ignored. It
// returns the counter, false for a malformed line.
func (n *Node) takeToken(line string) (uint64, bool) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "T" {
		return 0, false
	}
	c, err1 := strconv.ParseUint(f[1], 10, 64)
	nonce, err2 := strconv.ParseUint(f[2], 10, 64)
	from, err3 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil || from != predecessor(n.cfg.Index, len(n.cfg.Peers)) {
		return 0, false
	}
	n.mu.Lock()
	if c > n.tok.Last {
		n.tok.Last, n.tok.Held, n.tok.heldAt = c, true, time.Now()
		n.tok.log(&n.tok.Taken, Hop{Counter: c, Nonce: nonce, From: from})
	}
	n.mu.Unlock()
	return c, true
}

// tokenAcked clears the unacknowledged pass of counter c.
func (n *Node) tokenAcked(c uint64) {
	n.mu.Lock()
	if n.tok.out != nil && n.tok.out.Counter == c {
		n.tok.out = nil
	}
	n.mu.Unlock()
}

// CheckToken returns every violation of the ring (empty: consistent):
// every pass a guest took must be one its predecessor made (same counter
// and nonce) or the creation of the token on guest 0, and exactly one
// token must exist: held by one guest, or (unless settled) passed and not
// yet taken. Settled (nothing in flight any more), a pass never taken was
// lost.
func CheckToken(audits []Audit, settled bool) []string {
	var v []string
	n := len(audits)
	type key struct {
		from int
		c    uint64
	}
	passed := map[key]uint64{}
	for i, a := range audits {
		for _, h := range a.Token.Passed {
			passed[key{i, h.Counter}] = h.Nonce
		}
	}
	orphans, example := 0, ""
	for i, a := range audits {
		p := audits[predecessor(i, n)].Token
		for _, h := range a.Token.Taken {
			nonce, found := passed[key{h.From, h.Counter}]
			ok := h.From == -1 && i == 0 && h.Counter == 1 ||
				found && h.From == predecessor(i, n) && nonce == h.Nonce ||
				!found && p.Truncated && len(p.Passed) > 0 && h.Counter < p.Passed[0].Counter // older than the log
			if !ok {
				if orphans++; orphans == 1 {
					example = fmt.Sprintf("guest %d took token %d (nonce %#x, from %d) that its predecessor never passed", i, h.Counter, h.Nonce, h.From)
				}
			}
		}
	}
	if orphans > 0 {
		v = append(v, fmt.Sprintf("%d orphan tokens, e.g. %s", orphans, example))
	}
	var held, flying []string
	for i, a := range audits {
		if a.Token.Held {
			held = append(held, fmt.Sprintf("held by guest %d (counter %d)", i, a.Token.Last))
		}
		// Only a guest's newest pass can still be on its way.
		if k := len(a.Token.Passed); k > 0 {
			last := a.Token.Passed[k-1]
			if to := successor(i, n); audits[to].Token.Last < last.Counter {
				flying = append(flying, fmt.Sprintf("passed by guest %d to guest %d (counter %d), not taken", i, to, last.Counter))
			}
		}
	}
	switch tokens := len(held) + len(flying); {
	case settled && len(flying) > 0:
		v = append(v, fmt.Sprintf("token lost in transit: %s", strings.Join(flying, "; ")))
	case tokens == 0:
		v = append(v, "no token: it was lost (or the ring never started)")
	case tokens > 1:
		v = append(v, fmt.Sprintf("%d tokens: %s", tokens, strings.Join(append(held, flying...), "; ")))
	}
	return v
}
