// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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

func (p *Primary) state0() string {
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
	var st Status
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
