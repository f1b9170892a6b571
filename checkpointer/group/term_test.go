// SPDX-License-Identifier: Apache-2.0

package group

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// stateMember answers STATE with its count of ROUNDs and takes rounds.
type stateMember struct{ rounds uint64 }

func (m *stateMember) Name() string { return "vm0" }
func (m *stateMember) Round(_ context.Context, r uint64) (Done, error) {
	m.rounds = r
	return Done{Paused: time.Now(), Epoch: r}, nil
}
func (m *stateMember) Commit(uint64) error                 { return nil }
func (m *stateMember) Abort(context.Context, uint64) error { return nil }
func (m *stateMember) State(context.Context, uint64) (State, error) {
	return State{Last: m.rounds}, nil
}

// The agent's side of terms: a connection with a lower term is refused
// (ErrSuperseded) and a higher one takes over; a connection without a
// term, once a termed coordinator connected, may only observe (STATE) and
// does not take the agent from the coordinator leading it.
func TestTerms(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ServeMember(ctx, ln, &stateMember{}, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
	link := func(term uint64) *RemoteMember {
		m := NewRemoteMember("vm0", dial)
		m.setTerm(term)
		t.Cleanup(m.Close)
		return m
	}
	a, obs := link(10), link(0)
	if _, err := a.Round(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if st, err := obs.State(ctx, 1); err != nil || st.Last != 1 {
		t.Fatalf("observer's STATE: %+v, %v", st, err)
	}
	if _, err := obs.Round(ctx, 2); err == nil || !strings.Contains(err.Error(), "from an observer") {
		t.Fatalf("observer's ROUND: %v", err)
	}
	leader := a.c
	if _, err := a.Round(ctx, 2); err != nil || a.c != leader {
		t.Fatalf("the leader lost its connection to an observer: %v", err)
	}
	b := link(20)
	if _, err := b.Round(ctx, 3); err != nil {
		t.Fatal(err)
	}
	_, err = a.Round(ctx, 4)
	if !errors.Is(err, ErrSuperseded) {
		t.Fatalf("term 10 after term 20: %v, want superseded", err)
	}
	if _, err := link(10).State(ctx, 1); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("a new connection of term 10: %v, want superseded", err)
	}
	if _, err := b.Round(ctx, 5); err != nil {
		t.Fatalf("term 20 after the refusals: %v", err)
	}
}
