// SPDX-License-Identifier: Apache-2.0

package kv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound is returned by Client.Get for a missing key.
var ErrNotFound = errors.New("kv: not found")

// Client speaks the line protocol over one connection. It is not safe for
// concurrent use.
type Client struct {
	c       net.Conn
	r       *bufio.Reader
	Timeout time.Duration // per request; 0 means none
}

// NewClient wraps an established connection.
func NewClient(c net.Conn) *Client { return &Client{c: c, r: bufio.NewReader(c)} }

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// Do sends one request line and returns the reply line. Replies starting
// with "ERR " come back as errors.
func (c *Client) Do(req string) (string, error) {
	if c.Timeout > 0 {
		if err := c.c.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
			return "", err
		}
	}
	if _, err := c.c.Write([]byte(req + "\n")); err != nil {
		return "", fmt.Errorf("send %q: %w", req, err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reply to %q: %w", req, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if msg, ok := strings.CutPrefix(line, "ERR "); ok {
		if msg == "not found" {
			return "", ErrNotFound
		}
		return "", fmt.Errorf("%s: %s", req, msg)
	}
	return line, nil
}

// Set stores v under k and returns the write's sequence number.
func (c *Client) Set(k, v string) (uint64, error) {
	r, err := c.Do("SET " + k + " " + v)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(r, "OK ")
	if !ok {
		return 0, fmt.Errorf("SET %s: unexpected reply %q", k, r)
	}
	return strconv.ParseUint(s, 10, 64)
}

// Get returns the value of k, or ErrNotFound.
func (c *Client) Get(k string) (string, error) { return c.Do("GET " + k) }

// Incr increments k and returns its new value.
func (c *Client) Incr(k string) (int64, error) {
	r, err := c.Do("INCR " + k)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(r, 10, 64)
}

// Dirty sets the guest's background dirtier rate in pages per 10 ms.
func (c *Client) Dirty(pages int) error {
	_, err := c.Do("DIRTY " + strconv.Itoa(pages))
	return err
}

// Stats is the parsed STATS reply.
type Stats struct {
	Keys, Seq, DirtyRate, Dirtied uint64
}

// Stats queries the store's counters.
func (c *Client) Stats() (Stats, error) {
	r, err := c.Do("STATS")
	if err != nil {
		return Stats{}, err
	}
	return ParseStats(r)
}

// ParseStats parses a STATS reply line.
func ParseStats(line string) (Stats, error) {
	var s Stats
	fields := map[string]*uint64{"keys": &s.Keys, "seq": &s.Seq, "dirty": &s.DirtyRate, "dirtied": &s.Dirtied}
	seen := make(map[string]bool, len(fields))
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		p, known := fields[k]
		if !ok || !known || seen[k] {
			return Stats{}, fmt.Errorf("stats %q: bad field %q", line, f)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return Stats{}, fmt.Errorf("stats %q: %w", line, err)
		}
		*p = n
		seen[k] = true
	}
	if len(seen) != len(fields) {
		return Stats{}, fmt.Errorf("stats %q: want %d fields", line, len(fields))
	}
	return s, nil
}
