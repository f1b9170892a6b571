// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is what `resilire status` shows about a running agent.
type Status struct {
	Role  string `json:"role"`
	VM    string `json:"vm"`
	State string `json:"state"`
	// Epoch is the last acknowledged (primary) or committed (backup) epoch.
	Epoch uint64 `json:"epoch"`
	// Staged is a group backup's acknowledged checkpoint that the group
	// has not committed yet (0: none).
	Staged uint64 `json:"staged,omitempty"`
	// Undo is the epoch a group backup can still roll its replica back
	// to, and UndoBytes what it keeps for that (0: none).
	Undo      uint64 `json:"undo,omitempty"`
	UndoBytes int    `json:"undo_bytes,omitempty"`
	// Peer is the backup address (primary) or the primary's (backup).
	Peer string `json:"peer,omitempty"`
	// Since is when the agent entered State.
	Since time.Time `json:"since"`
	// Stats summarises recent epochs (primary; nil until one committed).
	Stats *EpochSummary `json:"stats,omitempty"`
	// DirtyTracking is how the primary's domain finds dirty pages, and why
	// (nil for a domain with one mechanism only).
	DirtyTracking *DirtyTracking `json:"dirty_tracking,omitempty"`
	// Scrub is the last memory scrub's result (nil before the first).
	Scrub *ScrubStatus `json:"scrub,omitempty"`
	// History lists an agent's role changes (Roles: backup, then primary
	// once the guest went live here).
	History []RoleChange `json:"history,omitempty"`
}

func (p *Primary) setState(s string) {
	p.mu.Lock()
	p.state = s
	p.status.Since = time.Now()
	p.mu.Unlock()
	p.m.setState(s)
}

func (p *Primary) setSynced(on bool) {
	p.mu.Lock()
	p.synced = on
	p.mu.Unlock()
}

// Protecting reports whether the primary has a backup it is past the
// initial synchronisation with: its next epoch goes to that backup. A
// group member that is not protecting cannot take a round (its backup is
// lost, or still being filled).
func (p *Primary) Protecting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.synced
}

// State is the primary's state (Status().State, cheaply).
func (p *Primary) State() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

func (p *Primary) setAcked(e uint64) {
	p.mu.Lock()
	p.acked = e
	p.mu.Unlock()
}

func (p *Primary) ackedEpoch() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// Status reports the primary's state.
func (p *Primary) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{Role: "primary", VM: p.cfg.Domain.Name(), State: p.state, Epoch: p.acked, Since: p.status.Since}
	if r, ok := p.cfg.Domain.(TrackingReporter); ok {
		t := r.DirtyTracking()
		st.DirtyTracking = &t
	}
	st.Scrub = p.scrubStatus()
	return st
}

// ServeHTTP serves /metrics (Prometheus, from gather) and /status (JSON
// from status) on addr until ctx ends. ready, if non-nil, receives the
// bound address.
func ServeHTTP(ctx context.Context, addr string, gather prometheus.Gatherer, status func() Status, ready chan<- string, log *slog.Logger) error {
	return ServeAgentHTTP(ctx, addr, gather, status, nil, ready, log)
}

// SwitchoverTimeout bounds one POST /switchover.
const SwitchoverTimeout = time.Minute

// ServeAgentHTTP is ServeHTTP, for any status (a group coordinator's
// too), plus POST /switchover when switchover is set, which it accepts
// only on a loopback address: a request from another host must not be
// able to move the guest. On a loopback address it also serves the Go
// profiles under /debug/pprof/ (heap: the agent's own memory per VM).
func ServeAgentHTTP[S any](ctx context.Context, addr string, gather prometheus.Gatherer, status func() S,
	switchover func(context.Context) error, ready chan<- string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(status())
	})
	loopback := false
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		loopback = ap.Addr().IsLoopback()
	}
	if loopback {
		// The agent's own memory and CPU, for the operator on this host
		// only: a profile names the guest's VM and paths.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	if switchover != nil {
		mux.HandleFunc("POST /switchover", func(w http.ResponseWriter, r *http.Request) {
			if !loopback {
				http.Error(w, "switchover is served only on a loopback --metrics-addr", http.StatusForbidden)
				return
			}
			sctx, cancel := context.WithTimeout(r.Context(), SwitchoverTimeout)
			defer cancel()
			if err := switchover(sctx); err != nil {
				code := http.StatusInternalServerError
				if errors.Is(err, ErrNotProtected) {
					code = http.StatusConflict
				}
				http.Error(w, err.Error(), code)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(status())
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	if log != nil {
		log.Info("serving metrics and status", "addr", ln.Addr().String())
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// FetchStatus asks the agent serving HTTP at addr for its status.
func FetchStatus(ctx context.Context, addr string) (Status, error) {
	return FetchStatusOf[Status](ctx, addr)
}

// FetchStatusOf asks whatever serves /status at addr (an agent, a group
// coordinator) for its status, decoded as S.
func FetchStatusOf[S any](ctx context.Context, addr string) (S, error) {
	var st S
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, fmt.Errorf("status request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("status from %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status from %s: %s", addr, resp.Status)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<16)).Decode(&st); err != nil {
		return st, fmt.Errorf("status from %s: %w", addr, err)
	}
	return st, nil
}

// RequestSwitchover asks the agent serving HTTP at addr (its loopback
// --metrics-addr) to hand its guest over to the backup, and returns the
// agent's status afterwards.
func RequestSwitchover(ctx context.Context, addr string) (Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/switchover", nil)
	if err != nil {
		return st, fmt.Errorf("switchover request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("switchover via %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("switchover via %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("switchover via %s: %w", addr, err)
	}
	return st, nil
}
