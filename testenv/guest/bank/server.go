// SPDX-License-Identifier: Apache-2.0

package bank

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// writeTimeout bounds each reply write, so that a stalled client cannot hold
// the database's one connection (an audit streams inside a transaction).
const writeTimeout = 30 * time.Second

// Serve serves clients on l until l is closed, one goroutine per
// connection. When l is closed it closes the open connections, waits for
// their handlers and returns nil; the database stays open (Close it after).
func (db *DB) Serve(l net.Listener) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		db.wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		db.wg.Add(1)
		go func() {
			defer db.wg.Done()
			db.serveConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

func (db *DB) serveConn(c net.Conn) {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, MaxLine), MaxLine)
	w := bufio.NewWriter(c)
	for sc.Scan() {
		if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			return
		}
		if err := db.handle(sc.Text(), w); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		_, _ = w.WriteString("ERR line too long\n")
		_ = w.Flush()
	}
}

// handle answers one request line on w. It returns only w's errors: every
// failure of the request itself is answered with ERR.
func (db *DB) handle(line string, w *bufio.Writer) error {
	r, err := parseRequest(line)
	if err != nil {
		return reply(w, "ERR ", err.Error())
	}
	ctx := context.Background()
	if r.op == 'A' {
		return db.serveAudit(ctx, w)
	}
	id := strconv.FormatUint(r.id, 10)
	switch err := db.transfer(ctx, r); {
	case err == nil:
		return reply(w, "OK ", id)
	case errors.Is(err, ErrInsufficient):
		return reply(w, "NOFUNDS ", id)
	default:
		return reply(w, "ERR ", "transfer "+id+": "+err.Error())
	}
}

// serveAudit streams one "I <id>" line per committed transfer, then the
// summary; a database error ends it with ERR instead.
func (db *DB) serveAudit(ctx context.Context, w *bufio.Writer) error {
	var werr error
	buf := make([]byte, 0, 32)
	s, err := db.audit(ctx, func(id uint64) error {
		buf = strconv.AppendUint(append(buf[:0], "I "...), id, 10)
		buf = append(buf, '\n')
		_, werr = w.Write(buf)
		return werr
	})
	switch {
	case werr != nil:
		return werr
	case err != nil:
		return reply(w, "ERR ", "audit: "+err.Error())
	}
	return reply(w, "", s.String())
}

func reply(w *bufio.Writer, prefix, msg string) error {
	_, err := w.WriteString(prefix + oneLine(msg, MaxLine-len(prefix)-1) + "\n")
	return err
}
