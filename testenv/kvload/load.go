// SPDX-License-Identifier: Apache-2.0

package kvload

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

// Sample is one request as the client saw it.
type Sample struct {
	Start   time.Time     // when the request was sent
	Latency time.Duration // until its reply (or failure)
	OK      bool          // an acknowledgement arrived
	Conn    int           // connection number: 0 is the first, each reconnect adds one
}

// Result is what a load run observed.
type Result struct {
	Samples []Sample
	// Acked maps each key whose SET was acknowledged to its value.
	Acked map[string]string
	// Reconnects counts connections opened after the first: zero means the
	// original TCP connection survived the whole run.
	Reconnects int
	// Inconsistent counts replies that contradict the client's own history:
	// a write sequence number at or below one already acknowledged means
	// the server rolled back past a reply the client had seen (a reply that
	// left the primary before its checkpoint was safe), or an error reply.
	Inconsistent int
	// LastSeq is the server's write sequence number in the last reply.
	LastSeq uint64
}

// Options shapes a run.
type Options struct {
	Addr        string        // host:port of the guest's key-value server
	Duration    time.Duration // how long to send
	Think       time.Duration // pause between requests
	Timeout     time.Duration // per-request timeout before giving up on a connection
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	KeyPrefix   string
	MaxRequests int // 0 = unbounded (Duration still bounds the run)
	// Stop, if set, ends the run early (cleanly) once closed.
	Stop <-chan struct{}
}

func (o *Options) defaults() {
	if o.Think == 0 {
		o.Think = 10 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "k"
	}
}

// conn is one line-protocol connection.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (c *conn) do(req string, timeout time.Duration) (string, error) {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := c.c.Write([]byte(req + "\n")); err != nil {
		return "", err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// Run sends SET requests, one at a time, on one connection for
// opts.Duration, reconnecting (and counting it) when the connection breaks.
// A SET counts as acknowledged only when its "OK" reply was read.
func Run(ctx context.Context, opts Options) (*Result, error) {
	opts.defaults()
	res := &Result{Acked: make(map[string]string)}
	deadline := time.Now().Add(opts.Duration)
	var cur *conn
	defer func() {
		if cur != nil {
			cur.c.Close()
		}
	}()
	for i := 0; time.Now().Before(deadline) && (opts.MaxRequests == 0 || i < opts.MaxRequests); i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if stopped(opts.Stop) {
			return res, nil
		}
		if cur == nil {
			c, err := opts.Dial(ctx, "tcp", opts.Addr)
			if err != nil {
				time.Sleep(opts.Think)
				continue
			}
			if len(res.Samples) > 0 || i > 0 {
				res.Reconnects++
			}
			cur = &conn{c: c, r: bufio.NewReader(c)}
		}
		key := fmt.Sprintf("%s%06d", opts.KeyPrefix, i)
		val := fmt.Sprintf("v%d", i)
		start := time.Now()
		reply, err := cur.do("SET "+key+" "+val, opts.Timeout)
		s := Sample{Start: start, Latency: time.Since(start), Conn: res.Reconnects}
		switch {
		case err != nil:
			cur.c.Close()
			cur = nil
		case strings.HasPrefix(reply, "OK "):
			s.OK = true
			res.Acked[key] = val
			seq, perr := strconv.ParseUint(strings.TrimPrefix(reply, "OK "), 10, 64)
			if perr != nil || seq <= res.LastSeq {
				res.Inconsistent++
			}
			res.LastSeq = seq
		default:
			res.Inconsistent++
		}
		res.Samples = append(res.Samples, s)
		time.Sleep(opts.Think)
	}
	return res, nil
}

// ErrLost reports acknowledged writes missing after failover.
var ErrLost = errors.New("acknowledged writes lost")

// Verify reads back every acknowledged key on a fresh connection and
// returns the keys whose value is missing or different.
func Verify(ctx context.Context, opts Options, acked map[string]string) (lost []string, err error) {
	opts.defaults()
	c, err := opts.Dial(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("verify: dial %s: %w", opts.Addr, err)
	}
	defer c.Close()
	cn := &conn{c: c, r: bufio.NewReader(c)}
	for k, want := range acked {
		got, err := cn.do("GET "+k, opts.Timeout)
		if err != nil {
			return lost, fmt.Errorf("verify: GET %s: %w", k, err)
		}
		if got != want {
			lost = append(lost, k)
		}
	}
	return lost, nil
}

// stopped reports whether stop (nil: never) is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}
