// SPDX-License-Identifier: Apache-2.0

package xbank

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// BulkPort takes bulk transfers between the guests (VM-to-VM throughput).
const BulkPort = 7302

// serveBulk counts what a peer sends until it closes its side, then
// answers "GOT <bytes>".
func serveBulk(c net.Conn) {
	defer c.Close()
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return
	}
	_, _ = fmt.Fprintf(c, "GOT %d\n", n)
}

// bulk sends to guest `to` for d, then waits for its count: the bytes the
// receiver got and the time to its answer.
func (n *Node) bulk(to int, d time.Duration) (int64, time.Duration, error) {
	if to < 0 || to >= len(n.cfg.Peers) || to == n.cfg.Index {
		return 0, 0, fmt.Errorf("bulk to guest %d", to)
	}
	if d <= 0 || d > time.Minute {
		return 0, 0, fmt.Errorf("bulk for %v", d)
	}
	c, err := net.DialTimeout("tcp", netip.AddrPortFrom(n.cfg.Peers[to], BulkPort).String(), 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	start := time.Now()
	buf := make([]byte, 64<<10)
	_ = c.SetWriteDeadline(start.Add(d))
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			break // the deadline
		}
	}
	_ = c.SetWriteDeadline(time.Time{})
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("bulk count: %w", err)
	}
	got, err := strconv.ParseInt(strings.TrimPrefix(strings.TrimSpace(line), "GOT "), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bulk count %q", line)
	}
	return got, time.Since(start), nil
}

// bulkCommand runs "BULK <to> <ms>" and answers "BULK <bytes> <µs>".
func (n *Node) bulkCommand(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) != 3 {
		return "ERR want BULK <to> <ms>"
	}
	to, err1 := strconv.Atoi(f[1])
	ms, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return "ERR want BULK <to> <ms>"
	}
	got, took, err := n.bulk(to, time.Duration(ms)*time.Millisecond)
	if err != nil {
		return "ERR " + strings.ReplaceAll(err.Error(), "\n", " ")
	}
	return fmt.Sprintf("BULK %d %d", got, took.Microseconds())
}

// Bulk asks a guest (on its audit connection) to send to guest `to` for
// d, and returns the bytes its peer got per second.
func Bulk(c net.Conn, r *bufio.Reader, to int, d time.Duration) (float64, error) {
	reply, err := Ask(c, r, fmt.Sprintf("BULK %d %d", to, d.Milliseconds()))
	if err != nil {
		return 0, err
	}
	var got, us int64
	if _, err := fmt.Sscanf(reply, "BULK %d %d", &got, &us); err != nil || us <= 0 {
		return 0, fmt.Errorf("xbank bulk: %q", reply)
	}
	return float64(got) / (float64(us) / 1e6), nil
}
