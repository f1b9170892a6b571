// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Continuous protection. A standby agent runs the roles below by itself;
// an operator never scripts a step:
//
//	backup:  waiting -> standby -> fencing -> active           (Backup)
//	                                   \-> fence-failed (stays passive)
//	primary: active -> unprotected -> syncing -> protected    (Primary, continue policy)
//	                       ^                          |
//	                       '------ backup lost -------'
//
// Once the guest runs here (active), the agent becomes its primary: it
// dials the standby it was given (the old primary's host once it returns,
// or a spare) until one answers, synchronises it while the guest runs,
// and protects with output commit again. Until then the guest talks
// unprotected, one interval late: it is the only copy, so holding its
// output would only turn a failover into an outage. The host that comes
// back runs a fresh standby agent, which never lets its stale guest out
// (its port stays blocked, its QEMU is destroyed) and holds nothing until
// the new primary's first consistent checkpoint.

// Roles is a standby agent that becomes a primary after its failover.
type Roles struct {
	backup *Backup
	// promote builds the primary over the guest now running here; nil
	// means the agent stays active, unprotected (no standby to go to).
	promote func(ctx context.Context) (*Primary, func(), error)
	log     *slog.Logger

	// run runs the promoted primary (its own Run unless SetRunner).
	run func(ctx context.Context, p *Primary) error

	mu      sync.Mutex
	primary *Primary
	history []RoleChange
}

// SetRunner makes Run run the promoted primary with run instead of its
// own Run (a VDEchp group member's primary runs under its member).
func (r *Roles) SetRunner(run func(ctx context.Context, p *Primary) error) { r.run = run }

// RoleChange is one step of the agent's role history, shown in /status.
type RoleChange struct {
	Role  string    `json:"role"`
	At    time.Time `json:"at"`
	Epoch uint64    `json:"epoch"` // the committed epoch the guest resumed from (primary)
}

// NewRoles runs b, then promote once b activated the guest.
func NewRoles(b *Backup, promote func(ctx context.Context) (*Primary, func(), error), log *slog.Logger) *Roles {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Roles{backup: b, promote: promote, log: log, history: []RoleChange{{Role: "backup", At: time.Now()}},
		run: func(ctx context.Context, p *Primary) error { return p.Run(ctx) }}
}

// Run serves as the backup until the guest is activated here, then runs
// the primary until ctx ends or it fails.
func (r *Roles) Run(ctx context.Context) error {
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- r.backup.Serve(sctx) }()
	select {
	case err := <-served:
		return err
	case <-r.backup.Activated():
	}
	if r.promote == nil {
		return <-served // active for good: Serve waits for ctx
	}
	epoch, _ := r.backup.Committed()
	p, closeP, err := r.promote(ctx)
	if err != nil {
		// The guest runs here whatever happens; only its protection failed.
		r.log.Error("guest active but cannot be protected again", "vm", r.backup.cfg.VM, "err", err)
		stop()
		return errors.Join(fmt.Errorf("become primary: %w", err), <-served)
	}
	defer closeP()
	r.mu.Lock()
	r.primary = p
	r.history = append(r.history, RoleChange{Role: "primary", At: time.Now(), Epoch: epoch})
	r.mu.Unlock()
	r.log.Warn("guest resumed here: now its primary, protecting it again as soon as a standby answers",
		"vm", r.backup.cfg.VM, "epoch", epoch)
	err = r.run(ctx, p)
	stop()
	if serr := <-served; err == nil {
		err = serr
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Status is the backup's until the guest went live here, then the
// primary's; History lists the role changes.
func (r *Roles) Status() Status {
	r.mu.Lock()
	p, h := r.primary, append([]RoleChange(nil), r.history...)
	r.mu.Unlock()
	var st Status
	if p != nil {
		st = p.Status()
	} else {
		st = r.backup.Status()
	}
	st.History = h
	return st
}

// Switchover hands the guest over if this agent is its primary now.
func (r *Roles) Switchover(ctx context.Context) error {
	r.mu.Lock()
	p := r.primary
	r.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%w: this agent is the backup", ErrNotProtected)
	}
	return p.Switchover(ctx)
}

// HandedOver reports whether this agent's primary ended by a switchover.
func (r *Roles) HandedOver() bool {
	r.mu.Lock()
	p := r.primary
	r.mu.Unlock()
	return p != nil && p.Status().State == StateHandedOver
}
