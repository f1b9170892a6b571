// SPDX-License-Identifier: Apache-2.0

package group

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The coordinator's link to a member agent: one TCP connection, one line
// per message (at most MaxLine bytes), one request at a time.
//
//	coordinator                member
//	ROUND <r>          ->      DONE <r> <unix-nanos paused>  |  FAIL <r> <why>
//	COMMIT <r>         ->      COMMITTED <r>                 |  FAIL <r> <why>

// MaxLine bounds a link message.
const MaxLine = 256

// memberRoundLimit bounds one round on the member's side (the
// coordinator's own timeout is usually far shorter).
const memberRoundLimit = time.Minute

// message is one parsed link line.
type message struct {
	verb  string
	round uint64
	arg   string
}

// parseLine decodes a link line (without its newline).
func parseLine(s string) (message, error) {
	if len(s) > MaxLine {
		return message{}, fmt.Errorf("group link: %d-byte line", len(s))
	}
	verb, rest, _ := strings.Cut(s, " ")
	num, arg, hasArg := strings.Cut(rest, " ")
	r, err := strconv.ParseUint(num, 10, 64)
	if err != nil || r == 0 || num != strconv.FormatUint(r, 10) {
		return message{}, fmt.Errorf("group link: bad round in %q", s)
	}
	m := message{verb: verb, round: r, arg: arg}
	switch verb {
	case "ROUND", "COMMIT", "COMMITTED":
		if hasArg {
			return message{}, fmt.Errorf("group link: %s takes no argument", verb)
		}
	case "DONE":
		if _, err := strconv.ParseInt(arg, 10, 64); err != nil {
			return message{}, fmt.Errorf("group link: bad pause time in %q", s)
		}
	case "FAIL":
		if arg == "" || strings.ContainsAny(arg, "\r\n") {
			return message{}, fmt.Errorf("group link: FAIL without a reason")
		}
	default:
		return message{}, fmt.Errorf("group link: unknown message %q", verb)
	}
	return m, nil
}

func (m message) String() string {
	if m.arg == "" {
		return m.verb + " " + strconv.FormatUint(m.round, 10)
	}
	return m.verb + " " + strconv.FormatUint(m.round, 10) + " " + m.arg
}

// oneLine makes a reason safe to send: no line breaks, bounded.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, s)
	if len(s) > MaxLine/2 {
		s = s[:MaxLine/2]
	}
	if s == "" {
		s = "failed"
	}
	return s
}

// ServeMember serves the coordinator's link for m on l until ctx ends. A
// new coordinator connection replaces the current one.
func ServeMember(ctx context.Context, l net.Listener, m Member, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() { <-ctx.Done(); l.Close() }()
	var (
		mu  sync.Mutex
		cur net.Conn
		wg  sync.WaitGroup
	)
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			mu.Lock()
			if cur != nil {
				cur.Close()
			}
			mu.Unlock()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("group link: %w", err)
		}
		mu.Lock()
		if cur != nil {
			cur.Close()
		}
		cur = c
		mu.Unlock()
		log.Info("group coordinator connected", "member", m.Name(), "peer", c.RemoteAddr().String())
		wg.Go(func() {
			defer c.Close()
			if err := serveLink(ctx, c, m); err != nil && ctx.Err() == nil {
				log.Warn("group link ended", "member", m.Name(), "err", err)
			}
		})
	}
}

func serveLink(ctx context.Context, c net.Conn, m Member) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := bufio.NewReaderSize(c, MaxLine+2)
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		msg, err := parseLine(line)
		if err != nil {
			return err
		}
		var reply message
		switch msg.verb {
		case "ROUND":
			rctx, rcancel := context.WithTimeout(cctx, memberRoundLimit)
			paused, err := m.Round(rctx, msg.round)
			rcancel()
			reply = message{verb: "DONE", round: msg.round, arg: strconv.FormatInt(paused.UnixNano(), 10)}
			if err != nil {
				reply = message{verb: "FAIL", round: msg.round, arg: oneLine(err.Error())}
			}
		case "COMMIT":
			reply = message{verb: "COMMITTED", round: msg.round}
			if err := m.Commit(msg.round); err != nil {
				reply = message{verb: "FAIL", round: msg.round, arg: oneLine(err.Error())}
			}
		default:
			return fmt.Errorf("group link: %s from the coordinator", msg.verb)
		}
		if _, err := c.Write([]byte(reply.String() + "\n")); err != nil {
			return err
		}
	}
}

// readLine reads one bounded line.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("group link: line over %d bytes", MaxLine)
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(line), "\n"), nil
}

// RemoteMember is a member agent reached over its link (ServeMember).
type RemoteMember struct {
	name string
	dial func(ctx context.Context) (net.Conn, error)

	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// NewRemoteMember reaches member name with dial (a new connection after
// any failure).
func NewRemoteMember(name string, dial func(ctx context.Context) (net.Conn, error)) *RemoteMember {
	return &RemoteMember{name: name, dial: dial}
}

// Name is the member's name.
func (m *RemoteMember) Name() string { return m.name }

// Round asks the member to checkpoint round r.
func (m *RemoteMember) Round(ctx context.Context, r uint64) (time.Time, error) {
	reply, err := m.call(ctx, message{verb: "ROUND", round: r}, "DONE")
	if err != nil {
		return time.Time{}, err
	}
	ns, _ := strconv.ParseInt(reply.arg, 10, 64)
	return time.Unix(0, ns), nil
}

// Commit releases the member's output of rounds <= r.
func (m *RemoteMember) Commit(r uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := m.call(ctx, message{verb: "COMMIT", round: r}, "COMMITTED")
	return err
}

// Close drops the link.
func (m *RemoteMember) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drop()
}

func (m *RemoteMember) drop() {
	if m.c != nil {
		m.c.Close()
		m.c, m.r = nil, nil
	}
}

func (m *RemoteMember) call(ctx context.Context, req message, want string) (message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		c, err := m.dial(ctx)
		if err != nil {
			return message{}, fmt.Errorf("dial member %s: %w", m.name, err)
		}
		m.c, m.r = c, bufio.NewReaderSize(c, MaxLine+2)
	}
	stop := context.AfterFunc(ctx, func() { _ = m.c.SetDeadline(time.Now()) })
	defer stop()
	reply, err := m.exchange(req)
	if err == nil && (reply.round != req.round || (reply.verb != want && reply.verb != "FAIL")) {
		err = fmt.Errorf("group link: %s answered %s", req, reply)
	}
	if err != nil {
		m.drop()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return message{}, err
	}
	if reply.verb == "FAIL" {
		return message{}, fmt.Errorf("member %s: %s", m.name, reply.arg)
	}
	return reply, nil
}

func (m *RemoteMember) exchange(req message) (message, error) {
	if _, err := m.c.Write([]byte(req.String() + "\n")); err != nil {
		return message{}, err
	}
	line, err := readLine(m.r)
	if err != nil {
		return message{}, err
	}
	return parseLine(line)
}
