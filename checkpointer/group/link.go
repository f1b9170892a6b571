// SPDX-License-Identifier: Apache-2.0

package group

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The coordinator's link to a member agent: one TCP connection, one line
// per message (at most MaxLine bytes), one request at a time.
//
//	coordinator                member
//	ROUND <r>          ->      DONE <r> <unix-nanos paused> <epoch>  |  FAIL <r> <why>
//	COMMIT <r>         ->      COMMITTED <r>                         |  FAIL <r> <why>
//	ABORT <r>          ->      ABORTED <r>                           |  FAIL <r> <why>
//	STATE <r>          ->      AT <r> <last> <acked> <epoch>         |  FAIL <r> <why>
//	HALT <r>           ->      HALTED <r>                            |  FAIL <r> <why>
//
// HALT is a stop-the-world round's first half (Coordinator.StopTheWorld):
// the member's guest captures round r and stays paused until ROUND r.
// STATE is a starting coordinator's question (a restart against running
// members): the last round the member was asked for, the last round its
// backup acknowledged, and its epoch of round r if acknowledged (0: not).
//
//	coordinator                member's backup (standby)
//	CHECK <r> <epoch>    ->    READY <r>                             |  FAIL <r> <why>
//	ACTIVATE <r> <epoch> ->    ACTIVE <r>                            |  FAIL <r> <why>
//
// CHECK asks, before a recovery stops any live member, whether the backup
// could follow ACTIVATE for that epoch; it changes nothing. A member whose
// primary has no backup fails a round with a reason that begins "no
// backup" (ErrNoBackup).
//
// Terms: a coordinator opens each connection with TERM <t> (its term,
// answered TERM <t>). An agent follows the highest term it has seen: a
// connection with a lower one is refused with a FAIL whose reason begins
// "superseded" (ErrSuperseded) and closed, so a coordinator that another
// took over from (Coordinator.Term, AwaitTakeover) cannot take the agent
// back, and exits. A connection without TERM is an observer once a termed
// coordinator connected: it may ask STATE only, and replaces nothing.

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
	case "ROUND", "COMMIT", "COMMITTED", "ABORT", "ABORTED", "ACTIVE", "STATE", "HALT", "HALTED", "READY", "TERM":
		if hasArg {
			return message{}, fmt.Errorf("group link: %s takes no argument", verb)
		}
	case "DONE":
		ns, e, _ := strings.Cut(arg, " ")
		if _, err := strconv.ParseInt(ns, 10, 64); err != nil {
			return message{}, fmt.Errorf("group link: bad pause time in %q", s)
		}
		if _, err := parseEpoch(e); err != nil {
			return message{}, fmt.Errorf("group link: bad epoch in %q", s)
		}
	case "ACTIVATE", "CHECK":
		if _, err := parseEpoch(arg); err != nil {
			return message{}, fmt.Errorf("group link: bad epoch in %q", s)
		}
	case "AT":
		if _, err := parseState(arg); err != nil {
			return message{}, fmt.Errorf("group link: %w in %q", err, s)
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

// parseEpoch parses a checkpoint epoch: canonical decimal, not 0.
func parseEpoch(s string) (uint64, error) {
	e, err := strconv.ParseUint(s, 10, 64)
	if err != nil || e == 0 || s != strconv.FormatUint(e, 10) {
		return 0, fmt.Errorf("bad epoch %q", s)
	}
	return e, nil
}

// parseState parses AT's "<last> <acked> <epoch>": canonical decimals, 0
// allowed.
func parseState(s string) (State, error) {
	f := strings.Split(s, " ")
	if len(f) != 3 {
		return State{}, errors.New("want last, acked and epoch")
	}
	var v [3]uint64
	for i, x := range f {
		n, err := strconv.ParseUint(x, 10, 64)
		if err != nil || x != strconv.FormatUint(n, 10) {
			return State{}, fmt.Errorf("bad number %q", x)
		}
		v[i] = n
	}
	return State{Last: v[0], Acked: v[1], Epoch: v[2]}, nil
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
	return serve(ctx, l, m.Name(), log, memberHandler(func() Member { return m }))
}

// ServeStandbyMember serves a member's backup on l, then, once member
// returns one (its guest resumed here and protected again), that member
// too: the group's next coordinator reaches it at the same address.
func ServeStandbyMember(ctx context.Context, l net.Listener, s Standby, member func() Member, log *slog.Logger) error {
	onMember, onStandby := memberHandler(member), standbyHandler(s)
	return serve(ctx, l, s.Name(), log, func(ctx context.Context, msg message) message {
		if msg.verb == "ACTIVATE" || msg.verb == "CHECK" {
			return onStandby(ctx, msg)
		}
		return onMember(ctx, msg)
	})
}

// memberHandler answers the coordinator's requests to the member member
// returns (nil: not a member yet, every request fails).
func memberHandler(member func() Member) func(context.Context, message) message {
	return func(ctx context.Context, msg message) message {
		m := member()
		if m == nil {
			switch msg.verb {
			case "ROUND", "COMMIT", "ABORT", "STATE", "HALT":
				return failure(msg.round, errors.New("not a group member (yet): its guest does not run here"))
			}
			return message{}
		}
		switch msg.verb {
		case "ROUND":
			rctx, cancel := context.WithTimeout(ctx, memberRoundLimit)
			defer cancel()
			d, err := m.Round(rctx, msg.round)
			if err != nil {
				return failure(msg.round, err)
			}
			return message{verb: "DONE", round: msg.round, arg: fmt.Sprintf("%d %d", d.Paused.UnixNano(), d.Epoch)}
		case "HALT":
			h, ok := m.(Halter)
			if !ok {
				return failure(msg.round, errors.New("this member cannot take stop-the-world rounds"))
			}
			hctx, cancel := context.WithTimeout(ctx, memberRoundLimit)
			defer cancel()
			if err := h.Halt(hctx, msg.round); err != nil {
				return failure(msg.round, err)
			}
			return message{verb: "HALTED", round: msg.round}
		case "COMMIT":
			if err := m.Commit(msg.round); err != nil {
				return failure(msg.round, err)
			}
			return message{verb: "COMMITTED", round: msg.round}
		case "ABORT":
			actx, cancel := context.WithTimeout(ctx, memberRoundLimit)
			defer cancel()
			if err := m.Abort(actx, msg.round); err != nil {
				return failure(msg.round, err)
			}
			return message{verb: "ABORTED", round: msg.round}
		case "STATE":
			st, err := m.State(ctx, msg.round)
			if err != nil {
				return failure(msg.round, err)
			}
			return message{verb: "AT", round: msg.round, arg: fmt.Sprintf("%d %d %d", st.Last, st.Acked, st.Epoch)}
		}
		return message{}
	}
}

// standbyActivateLimit bounds one activation on the backup's side: fencing
// and restoring a guest.
const standbyActivateLimit = 10 * time.Minute

// ServeStandby serves the coordinator's recovery orders for a member's
// backup s on l until ctx ends.
func ServeStandby(ctx context.Context, l net.Listener, s Standby, log *slog.Logger) error {
	return serve(ctx, l, s.Name(), log, standbyHandler(s))
}

// standbyHandler answers the coordinator's recovery orders to s.
func standbyHandler(s Standby) func(context.Context, message) message {
	return func(ctx context.Context, msg message) message {
		if msg.verb != "ACTIVATE" && msg.verb != "CHECK" {
			return message{}
		}
		epoch, _ := parseEpoch(msg.arg) // parseLine checked it
		if msg.verb == "CHECK" {
			if err := s.CanActivateAt(ctx, msg.round, epoch); err != nil {
				return failure(msg.round, err)
			}
			return message{verb: "READY", round: msg.round}
		}
		actx, cancel := context.WithTimeout(ctx, standbyActivateLimit)
		defer cancel()
		if err := s.ActivateAt(actx, msg.round, epoch); err != nil {
			return failure(msg.round, err)
		}
		return message{verb: "ACTIVE", round: msg.round}
	}
}

// failure is a FAIL reply.
func failure(r uint64, err error) message {
	return message{verb: "FAIL", round: r, arg: oneLine(err.Error())}
}

// serve accepts coordinator connections on l (a new one replaces the
// current one, unless its term is lower: see Terms above) and answers
// each request with handle; a request handle does not know (zero reply)
// ends the connection.
func serve(ctx context.Context, l net.Listener, name string, log *slog.Logger, handle func(context.Context, message) message) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() { <-ctx.Done(); l.Close() }()
	type conn struct {
		c      net.Conn
		cancel context.CancelFunc
	}
	var (
		mu   sync.Mutex
		cur  conn
		term uint64 // the highest term seen
		wg   sync.WaitGroup
	)
	// A new coordinator connection replaces the current one, and cancels
	// what the old one asked for (a round it no longer waits for).
	replace := func(n conn) {
		mu.Lock()
		defer mu.Unlock()
		if cur.c != nil {
			cur.c.Close()
			cur.cancel()
		}
		cur = n
	}
	// admit decides what a connection whose first request is first may
	// do: lead (replace the current one), observe, or nothing (a reply to
	// send before closing it).
	admit := func(first message) (lead bool, refuse *message) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case first.verb == "TERM" && first.round < term:
			f := failure(first.round, fmt.Errorf("%w: term %d, this agent follows term %d", ErrSuperseded, first.round, term))
			return false, &f
		case first.verb == "TERM":
			term = first.round
			return true, nil
		}
		return term == 0, nil
	}
	defer wg.Wait()
	defer replace(conn{})
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("group link: %w", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		wg.Go(func() {
			defer cancel()
			// Closed when serve ends or another coordinator replaces it.
			defer context.AfterFunc(cctx, func() { c.Close() })()
			defer c.Close()
			r := bufio.NewReaderSize(c, MaxLine+2)
			// The first request says who connects; wait for it off the
			// accept loop, and drop a connection that says nothing.
			_ = c.SetReadDeadline(time.Now().Add(firstLineTimeout))
			first, err := readMessage(r)
			if err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Time{})
			lead, refuse := admit(first)
			if refuse != nil {
				log.Warn("group link: a superseded coordinator refused", "member", name, "peer", c.RemoteAddr().String(), "why", refuse.arg)
				_, _ = c.Write([]byte(refuse.String() + "\n"))
				return
			}
			h := handle
			if lead {
				replace(conn{c, cancel})
				log.Info("group coordinator connected", "member", name, "peer", c.RemoteAddr().String(), "term", first.round)
			} else {
				h = observe(handle)
			}
			if err := serveLink(cctx, c, r, first, h); err != nil && cctx.Err() == nil {
				log.Warn("group link ended", "member", name, "err", err)
			}
		})
	}
}

// firstLineTimeout bounds the wait for a new connection's first request.
const firstLineTimeout = 10 * time.Second

// observe restricts handle to an observer: STATE only.
func observe(handle func(context.Context, message) message) func(context.Context, message) message {
	return func(ctx context.Context, msg message) message {
		if msg.verb != "STATE" {
			return failure(msg.round, fmt.Errorf("%s from an observer: a coordinator opens its connection with TERM", msg.verb))
		}
		return handle(ctx, msg)
	}
}

// serveLink answers first, then every request on c.
func serveLink(ctx context.Context, c net.Conn, r *bufio.Reader, first message, handle func(context.Context, message) message) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for msg := first; ; {
		reply := message{verb: "TERM", round: msg.round}
		if msg.verb != "TERM" {
			reply = handle(cctx, msg)
		}
		if reply.verb == "" {
			return fmt.Errorf("group link: %s from the coordinator", msg.verb)
		}
		if _, err := c.Write([]byte(reply.String() + "\n")); err != nil {
			return err
		}
		var err error
		if msg, err = readMessage(r); err != nil {
			return err
		}
	}
}

// readMessage reads and parses one line.
func readMessage(r *bufio.Reader) (message, error) {
	line, err := readLine(r)
	if err != nil {
		return message{}, err
	}
	return parseLine(line)
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

// link is the coordinator's end of one agent's link: one request at a
// time, a new connection after any failure.
type link struct {
	name string
	dial func(ctx context.Context) (net.Conn, error)
	// term opens each connection (TERM); 0: an observer (STATE only once
	// a termed coordinator leads the agent).
	term uint64

	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// Name is the member's name.
func (l *link) Name() string { return l.name }

// Close drops the link.
func (l *link) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drop()
}

func (l *link) drop() {
	if l.c != nil {
		l.c.Close()
		l.c, l.r = nil, nil
	}
}

func (l *link) call(ctx context.Context, req message, want string) (message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		if err := l.open(ctx); err != nil {
			return message{}, err
		}
	}
	return l.request(ctx, req, want)
}

// open connects, and opens the connection with the link's term if it
// has one.
func (l *link) open(ctx context.Context) error {
	c, err := l.dial(ctx)
	if err != nil {
		return fmt.Errorf("dial %s: %w", l.name, err)
	}
	l.c, l.r = c, bufio.NewReaderSize(c, MaxLine+2)
	if l.term == 0 {
		return nil
	}
	_, err = l.request(ctx, message{verb: "TERM", round: l.term}, "TERM")
	return err
}

// probeTimeout bounds probeTerm.
const probeTimeout = 200 * time.Millisecond

// probeTerm reconnects with the link's term after the agent closed the
// connection; it returns the agent's ErrSuperseded refusal, nil otherwise
// (including when the agent cannot be reached: its host may be gone).
// The new connection, if it took, serves the next request.
func (l *link) probeTerm(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	if err := l.open(ctx); errors.Is(err, ErrSuperseded) {
		return err
	}
	return nil
}

// closedByPeer reports whether err is the other end closing the
// connection (not a timeout: a host that died says nothing).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// hello opens the link (TERM) if it is not open: a starting coordinator's
// claim on an agent it has nothing to ask yet (a member's backup).
func (l *link) hello(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil || l.term == 0 {
		return nil
	}
	return l.open(ctx)
}

// setTerm makes the link open its connections with TERM t (Coordinator.Run).
func (l *link) setTerm(t uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term != t {
		l.term = t
		l.drop()
	}
}

// request sends req on the open connection and reads its answer.
func (l *link) request(ctx context.Context, req message, want string) (message, error) {
	c := l.c // drop may clear l.c before stop runs
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	reply, err := l.exchange(req)
	if err == nil && (reply.round != req.round || (reply.verb != want && reply.verb != "FAIL")) {
		err = fmt.Errorf("group link: %s answered %s", req, reply)
	}
	if err != nil {
		l.drop()
		if ctx.Err() != nil {
			return message{}, fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		if l.term > 0 && req.verb != "TERM" && closedByPeer(err) {
			// The agent closes a coordinator's connection when another
			// coordinator connects: ask whether that one's term is higher
			// before this failure counts as the member's.
			return message{}, errors.Join(err, l.probeTerm(ctx))
		}
		return message{}, err
	}
	if reply.verb == "FAIL" {
		for _, known := range []error{ErrNoBackup, ErrSuperseded} {
			if strings.HasPrefix(reply.arg, known.Error()) {
				if known == ErrSuperseded {
					l.drop() // the agent closes it
				}
				return message{}, fmt.Errorf("%s: %w%s", l.name, known, strings.TrimPrefix(reply.arg, known.Error()))
			}
		}
		return message{}, fmt.Errorf("%s: %s", l.name, reply.arg)
	}
	return reply, nil
}

func (l *link) exchange(req message) (message, error) {
	if _, err := l.c.Write([]byte(req.String() + "\n")); err != nil {
		return message{}, err
	}
	return readMessage(l.r)
}

// RemoteMember is a member agent reached over its link (ServeMember).
type RemoteMember struct{ link }

// NewRemoteMember reaches member name with dial (a new connection after
// any failure).
func NewRemoteMember(name string, dial func(ctx context.Context) (net.Conn, error)) *RemoteMember {
	return &RemoteMember{link{name: name, dial: dial}}
}

// Round asks the member to checkpoint round r.
func (m *RemoteMember) Round(ctx context.Context, r uint64) (Done, error) {
	reply, err := m.call(ctx, message{verb: "ROUND", round: r}, "DONE")
	if err != nil {
		return Done{}, err
	}
	ns, e, _ := strings.Cut(reply.arg, " ")
	nanos, _ := strconv.ParseInt(ns, 10, 64) // parseLine checked both
	epoch, _ := parseEpoch(e)
	return Done{Paused: time.Unix(0, nanos), Epoch: epoch}, nil
}

// Halt asks the member to capture round r and stay paused until Round(r).
func (m *RemoteMember) Halt(ctx context.Context, r uint64) error {
	_, err := m.call(ctx, message{verb: "HALT", round: r}, "HALTED")
	return err
}

// Commit releases the member's output of rounds <= r.
func (m *RemoteMember) Commit(r uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := m.call(ctx, message{verb: "COMMIT", round: r}, "COMMITTED")
	return err
}

// Abort tells the member to stop its guest for good.
func (m *RemoteMember) Abort(ctx context.Context, r uint64) error {
	_, err := m.call(ctx, message{verb: "ABORT", round: r}, "ABORTED")
	return err
}

// State asks the member where it is (a starting coordinator).
func (m *RemoteMember) State(ctx context.Context, r uint64) (State, error) {
	reply, err := m.call(ctx, message{verb: "STATE", round: r}, "AT")
	if err != nil {
		return State{}, err
	}
	return parseState(reply.arg) // parseLine checked it
}

// RemoteStandby is a member's backup agent reached over its link
// (ServeStandby).
type RemoteStandby struct{ link }

// NewRemoteStandby reaches member name's backup with dial.
func NewRemoteStandby(name string, dial func(ctx context.Context) (net.Conn, error)) *RemoteStandby {
	return &RemoteStandby{link{name: name, dial: dial}}
}

// CanActivateAt asks the backup whether it could resume the guest from
// epoch (round r's); nothing changes.
func (s *RemoteStandby) CanActivateAt(ctx context.Context, r, epoch uint64) error {
	_, err := s.call(ctx, message{verb: "CHECK", round: r, arg: strconv.FormatUint(epoch, 10)}, "READY")
	return err
}

// ActivateAt orders the backup to resume the guest from epoch (round r's).
func (s *RemoteStandby) ActivateAt(ctx context.Context, r, epoch uint64) error {
	_, err := s.call(ctx, message{verb: "ACTIVATE", round: r, arg: strconv.FormatUint(epoch, 10)}, "ACTIVE")
	return err
}
