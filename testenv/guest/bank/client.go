// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Dialer opens a connection, as net.Dialer.DialContext does (tests pass one
// that dials from the client network namespace).
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Client is one TCP connection to the server. It is not safe for concurrent
// use. After an error other than ErrInsufficient or ErrServer the
// connection's state is unknown (a reply may still be on its way): close it
// and dial again.
type Client struct {
	c  net.Conn
	sc *bufio.Scanner
}

// Dial connects to the server at addr with dial (nil: net.Dialer).
func Dial(ctx context.Context, dial Dialer, addr string) (*Client, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("bank: dial %s: %w", addr, err)
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, MaxLine), MaxLine)
	return &Client{c: c, sc: sc}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// send writes req and arms ctx's end (cancellation or deadline) to
// interrupt a blocked read or write. The returned stop disarms it. Only
// ctx's own timer sets the connection's deadline, so an error it causes
// always comes with ctx.Err() set (RunLoad relies on that).
func (c *Client) send(ctx context.Context, req string) (stop func(), err error) {
	if err := c.c.SetDeadline(time.Time{}); err != nil {
		return func() {}, err
	}
	fired := make(chan struct{})
	after := context.AfterFunc(ctx, func() {
		_ = c.c.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	// Wait for a running AfterFunc, so it cannot poison the next request's
	// deadline.
	stop = func() {
		if !after() {
			<-fired
		}
	}
	if _, err := c.c.Write([]byte(req + "\n")); err != nil {
		return stop, fmt.Errorf("bank: send %q: %w", req, err)
	}
	return stop, nil
}

// line reads one reply line; an "ERR" line comes back as ErrServer.
func (c *Client) line(req string) (string, error) {
	if !c.sc.Scan() {
		err := c.sc.Err()
		if err == nil {
			err = net.ErrClosed
		}
		return "", fmt.Errorf("bank: reply to %q: %w", req, err)
	}
	l := c.sc.Text()
	if msg, ok := strings.CutPrefix(l, "ERR "); ok {
		return "", fmt.Errorf("%w: %s: %s", ErrServer, req, msg)
	}
	return l, nil
}

// Transfer moves amount from account src to dst as one transaction. It
// returns nil only once the server reported the commit. Sending the same id
// again is idempotent: the server answers OK if it already committed it,
// so an unacknowledged transfer can be retried on a new connection. A
// transfer that would overdraw src returns ErrInsufficient, nothing applied.
func (c *Client) Transfer(ctx context.Context, id uint64, src, dst int, amount int64) error {
	req := request{op: 'T', id: id, src: src, dst: dst, amount: amount}.String()
	stop, err := c.send(ctx, req)
	defer stop()
	if err != nil {
		return err
	}
	l, err := c.line(req)
	if err != nil {
		return err
	}
	sid := strconv.FormatUint(id, 10)
	switch l {
	case "OK " + sid:
		return nil
	case "NOFUNDS " + sid:
		return ErrInsufficient
	}
	return fmt.Errorf("bank: %s: unexpected reply %q", req, l)
}

// Audit is the database as the server sees it, read in one transaction.
type Audit struct {
	Transfers map[uint64]bool // ids of committed transfers
	Sum       int64           // sum of all balances
	Accounts  int             // number of accounts
	Integrity string          // result of PRAGMA integrity_check ("ok" when sound)
}

// Audit returns the database as the server sees it.
func (c *Client) Audit(ctx context.Context) (Audit, error) {
	stop, err := c.send(ctx, "A")
	defer stop()
	if err != nil {
		return Audit{}, err
	}
	a := Audit{Transfers: map[uint64]bool{}}
	for {
		l, err := c.line("A")
		if err != nil {
			return Audit{}, err
		}
		if v, ok := strings.CutPrefix(l, "I "); ok {
			id, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return Audit{}, fmt.Errorf("bank: audit: bad line %q", l)
			}
			a.Transfers[id] = true
			continue
		}
		s, err := parseSummary(l)
		if err != nil {
			return Audit{}, fmt.Errorf("bank: %w", err)
		}
		if s.transfers != len(a.Transfers) {
			return Audit{}, errors.New("bank: audit: " + strconv.Itoa(len(a.Transfers)) +
				" distinct ids, summary says " + strconv.Itoa(s.transfers))
		}
		a.Sum, a.Accounts, a.Integrity = s.sum, s.accounts, s.integrity
		return a, nil
	}
}

// AuditAt audits the bank at addr on a connection of its own.
func AuditAt(ctx context.Context, dial Dialer, addr string) (Audit, error) {
	c, err := Dial(ctx, dial, addr)
	if err != nil {
		return Audit{}, err
	}
	defer c.Close()
	return c.Audit(ctx)
}
