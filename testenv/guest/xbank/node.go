// SPDX-License-Identifier: Apache-2.0

package xbank

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Node is one guest's bank.
type Node struct {
	cfg   Config
	every time.Duration

	mu       sync.Mutex
	balance  int64
	sent     []Transfer
	outbox   map[uint64]Transfer // sent, not yet acknowledged
	received map[uint64]int64
	paused   bool
	seq      uint64
	links    []*peerLink
	sentAt   map[uint64]time.Time // first send of each transfer in the outbox
	rtts     [][2]int64           // the last rttKeep transfer round trips (Audit.RTTs)
	tok      tokenState
}

// rttKeep is how many recent transfer round trips the audit summarises.
const rttKeep = 2000

// peerLink is the connection to one other guest, redialled after any
// failure; its outbox entries are sent again on it.
type peerLink struct {
	addr string
	mu   sync.Mutex
	c    net.Conn
}

// NewNode is guest cfg.Index's bank, sending a transfer every `every`
// once told RESUME (every guest must be up first: a datagram to a guest
// not yet listening is lost).
func NewNode(cfg Config, every time.Duration) *Node {
	n := &Node{cfg: cfg, every: every, balance: Initial, outbox: map[uint64]Transfer{}, received: map[uint64]int64{},
		sentAt: map[uint64]time.Time{}, paused: true}
	for _, p := range cfg.Peers {
		n.links = append(n.links, &peerLink{addr: netip.AddrPortFrom(p, PeerPort).String()})
	}
	return n
}

// Run serves the peers and the audit and sends transfers until ctx ends.
func (n *Node) Run(ctx context.Context, ready func()) error {
	self := n.cfg.Peers[n.cfg.Index]
	pl, err := net.Listen("tcp", netip.AddrPortFrom(self, PeerPort).String())
	if err != nil {
		return err
	}
	al, err := net.Listen("tcp", netip.AddrPortFrom(self, Port).String())
	if err != nil {
		pl.Close()
		return err
	}
	bl, err := net.Listen("tcp", netip.AddrPortFrom(self, BulkPort).String())
	if err != nil {
		pl.Close()
		al.Close()
		return err
	}
	defer pl.Close()
	defer al.Close()
	defer bl.Close()
	go accept(pl, n.servePeer)
	go accept(al, n.serveAudit)
	go accept(bl, serveBulk)
	if n.cfg.UDP {
		uc, err := net.ListenPacket("udp", netip.AddrPortFrom(self, PeerPort).String())
		if err != nil {
			return err
		}
		defer uc.Close()
		go n.serveUDP(uc)
	}
	if ready != nil {
		ready()
	}
	t := time.NewTicker(n.every)
	defer t.Stop()
	resend := time.NewTicker(250 * time.Millisecond)
	defer resend.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n.transfer()
			n.passToken()
		case <-resend.C:
			n.resend()
			n.resendToken()
		}
	}
}

func accept(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go serve(c)
	}
}

// transfer debits a random amount for a random other guest, both from the
// clock: a resumed guest does not repeat what it did after its checkpoint.
func (n *Node) transfer() {
	now := uint64(time.Now().UnixNano())
	n.mu.Lock()
	if n.paused {
		n.mu.Unlock()
		return
	}
	n.seq++
	to := int(now/1000) % (len(n.cfg.Peers) - 1)
	if to >= n.cfg.Index {
		to++
	}
	t := Transfer{ID: mix(now ^ n.seq<<48 ^ uint64(n.cfg.Index)<<56), To: to, Amount: int64(now/1000%100) + 1, At: int64(now)}
	if n.balance < t.Amount {
		n.mu.Unlock()
		return
	}
	n.balance -= t.Amount
	n.sent = append(n.sent, t)
	if n.cfg.UDP {
		n.mu.Unlock()
		n.sendUDP(t)
		return
	}
	n.outbox[t.ID] = t
	n.sentAt[t.ID] = time.Now()
	n.mu.Unlock()
	n.send(t)
}

// sendUDP sends a credit once, in one datagram.
func (n *Node) sendUDP(t Transfer) {
	c, err := net.Dial("udp", n.links[t.To].addr)
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = fmt.Fprintf(c, "C %d %d %d\n", t.ID, n.cfg.Index, t.Amount)
}

// serveUDP credits each datagram's transfer once.
func (n *Node) serveUDP(c net.PacketConn) {
	buf := make([]byte, 256)
	for {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		line := strings.TrimSpace(string(buf[:k]))
		if strings.HasPrefix(line, "T ") {
			n.takeToken(line)
		} else {
			n.credit(line)
		}
	}
}

// credit applies one "C <id> <from> <amount>" line once; it reports the
// transfer id, false for a malformed line.
func (n *Node) credit(line string) (uint64, bool) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "C" {
		return 0, false
	}
	id, err1 := strconv.ParseUint(f[1], 10, 64)
	amount, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || amount <= 0 {
		return 0, false
	}
	n.mu.Lock()
	if _, dup := n.received[id]; !dup {
		n.received[id] = amount
		n.balance += amount
	}
	n.mu.Unlock()
	return id, true
}

// mix is splitmix64's finaliser: spreads a clock value over 64 bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31 | 1
}

func (n *Node) resend() {
	n.mu.Lock()
	ts := make([]Transfer, 0, len(n.outbox))
	for _, t := range n.outbox {
		ts = append(ts, t)
	}
	n.mu.Unlock()
	for _, t := range ts {
		n.send(t)
	}
}

// send writes a credit to its receiver (the outbox sends it again until
// acknowledged).
func (n *Node) send(t Transfer) {
	n.links[t.To].write(n, fmt.Sprintf("C %d %d %d\n", t.ID, n.cfg.Index, t.Amount))
}

// write sends one line on the link, dialling if needed; a failure drops
// the connection.
func (l *peerLink) write(n *Node, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		c, err := net.DialTimeout("tcp", l.addr, time.Second)
		if err != nil {
			return
		}
		l.c = c
		go n.readAcks(c)
	}
	_ = l.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprint(l.c, line); err != nil {
		l.c.Close()
		l.c = nil
	}
}

func (n *Node) readAcks(c net.Conn) {
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "K "); ok {
			if v, err := strconv.ParseUint(k, 10, 64); err == nil {
				n.tokenAcked(v)
			}
			continue
		}
		id, ok := strings.CutPrefix(sc.Text(), "A ")
		if v, err := strconv.ParseUint(id, 10, 64); ok && err == nil {
			n.mu.Lock()
			if at, ok := n.sentAt[v]; ok {
				if n.rtts = append(n.rtts, [2]int64{time.Now().UnixMilli(), time.Since(at).Microseconds()}); len(n.rtts) > rttKeep {
					n.rtts = n.rtts[len(n.rtts)-rttKeep:]
				}
				delete(n.sentAt, v)
			}
			delete(n.outbox, v)
			n.mu.Unlock()
		}
	}
	c.Close()
}

// servePeer credits each transfer once and takes each newer token, and
// acknowledges both.
func (n *Node) servePeer(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		ack := "A"
		id, ok := n.credit(sc.Text())
		if !ok {
			if id, ok = n.takeToken(sc.Text()); !ok {
				return
			}
			ack = "K"
		}
		if _, err := fmt.Fprintf(c, "%s %d\n", ack, id); err != nil {
			return
		}
	}
}

// serveAudit answers AUDIT (the books as one JSON line), PAUSE and RESUME
// (stop and restart sending new transfers), PING (PONG: a client's
// round trip) and BULK (a bulk transfer to another guest: bulk.go).
func (n *Node) serveAudit(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var reply []byte
		if strings.HasPrefix(sc.Text(), "BULK ") {
			if _, err := fmt.Fprintln(c, n.bulkCommand(sc.Text())); err != nil {
				return
			}
			continue
		}
		switch sc.Text() {
		case "AUDIT":
			n.mu.Lock()
			a := Audit{Index: n.cfg.Index, Balance: n.balance, Sent: append([]Transfer(nil), n.sent...),
				Received: make(map[uint64]int64, len(n.received)), Pending: len(n.outbox), Paused: n.paused, Token: n.tok.Token}
			a.Token.Taken = append([]Hop(nil), n.tok.Taken...)
			a.Token.Passed = append([]Hop(nil), n.tok.Passed...)
			if n.tok.out != nil {
				a.Pending++
			}
			for k, v := range n.received {
				a.Received[k] = v
			}
			a.RTTs = append([][2]int64(nil), n.rtts...)
			n.mu.Unlock()
			reply, _ = json.Marshal(a)
		case "PING":
			reply = []byte("PONG")
		case "PAUSE", "RESUME":
			n.mu.Lock()
			n.paused = sc.Text() == "PAUSE"
			if !n.paused {
				n.createToken()
			}
			n.mu.Unlock()
			reply = []byte("OK")
		default:
			return
		}
		if _, err := c.Write(append(reply, '\n')); err != nil {
			return
		}
	}
}

// MaxAuditLine bounds an audit reply the client reads.
const MaxAuditLine = 64 << 20

// Ask sends one command on c and returns the reply line.
func Ask(c net.Conn, r *bufio.Reader, cmd string) (string, error) {
	if _, err := fmt.Fprintf(c, "%s\n", cmd); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) > MaxAuditLine {
		return "", errors.New("xbank: audit reply too long")
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// ReadAudit asks for one guest's books on c.
func ReadAudit(c net.Conn, r *bufio.Reader) (Audit, error) {
	line, err := Ask(c, r, "AUDIT")
	if err != nil {
		return Audit{}, err
	}
	var a Audit
	if err := json.Unmarshal([]byte(line), &a); err != nil {
		return a, fmt.Errorf("xbank audit: %w", err)
	}
	return a, nil
}
