// SPDX-License-Identifier: Apache-2.0

package group

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The coordinator's states (Status.State, the resilire_group_state series).
const (
	StateStarting      = "starting"       // asking the members where they are
	StateCommitting    = "committing"     // rounds held by every backup, commits going out
	StateWithoutBackup = "without-backup" // a member has no backup: nothing commits, nothing rolled back
	StateRecovering    = "recovering"     // a member failed: the group is being resumed on its backups
	StateRecovered     = "recovered"      // every member resumed from the last committed round
	StateFailed        = "failed"         // the coordinator stopped on an error (a refused or failed recovery)
	StateSuperseded    = "superseded"     // another coordinator took the group over: this one stopped
	StateStandby       = "standby"        // a standby coordinator watching the group's rounds (AwaitTakeover)
)

var allGroupStates = []string{StateStarting, StateCommitting, StateWithoutBackup, StateRecovering, StateRecovered, StateFailed, StateSuperseded, StateStandby}

// Status is what a coordinator says about its group (`group coordinate
// --metrics-addr`'s /status): is the group protected right now, and from
// which round would it resume.
type Status struct {
	Role  string `json:"role"` // "coordinator"
	State string `json:"state"`
	// Term is the coordinator's term (Coordinator.Term).
	Term uint64 `json:"term"`
	// Round is the last round asked for; Held the last one every backup
	// holds; Committed the one the group resumes from if a member fails
	// now (0: none, the group cannot be resumed).
	Round     uint64 `json:"round"`
	Held      uint64 `json:"held"`
	Committed uint64 `json:"committed"`
	// Rounds counts the rounds every backup held since the start.
	Rounds uint64 `json:"rounds"`
	// LastCommit and LastSkew are the last held round's (RoundStats).
	LastCommit time.Duration `json:"last_commit_ns"`
	LastSkew   time.Duration `json:"last_skew_ns"`
	// WithoutBackup names the members last seen without a backup.
	WithoutBackup []string `json:"without_backup,omitempty"`
	// Recovery is the group's recovery, once done.
	Recovery *Recovery `json:"recovery,omitempty"`
	Since    time.Time `json:"since"`
}

// Metrics are the coordinator's Prometheus series.
type Metrics struct {
	Rounds        prometheus.Counter
	Committed     prometheus.Gauge
	Commit        prometheus.Histogram
	Skew          prometheus.Histogram
	WithoutBackup prometheus.Gauge
	Recoveries    prometheus.Counter
	State         *prometheus.GaugeVec
}

// NewMetrics registers the coordinator's series on reg (a fresh registry
// if nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	buckets := []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}
	m := &Metrics{
		Rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "resilire_group_rounds_total",
			Help: "Rounds every member's backup held."}),
		Committed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilire_group_committed_round",
			Help: "The round the group resumes from if a member fails now (0: none, the group cannot be resumed: an alarm)."}),
		Commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "resilire_group_commit_seconds",
			Help: "Round start to every backup holding it.", Buckets: buckets}),
		Skew: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "resilire_group_pause_skew_seconds",
			Help: "Spread of the members' pause moments in a round.", Buckets: buckets}),
		WithoutBackup: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilire_group_members_without_backup",
			Help: "Members whose primary runs without a backup: nothing commits meanwhile (an alarm)."}),
		Recoveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "resilire_group_recoveries_total",
			Help: "Group recoveries done (every member resumed on its backup)."}),
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "resilire_group_state",
			Help: "1 for the coordinator's current state."}, []string{"state"}),
	}
	reg.MustRegister(m.Rounds, m.Committed, m.Commit, m.Skew, m.WithoutBackup, m.Recoveries, m.State)
	return m
}

// statusBox is the coordinator's Status, shared with its HTTP endpoint.
type statusBox struct {
	mu sync.Mutex
	st Status
	m  *Metrics
}

func (b *statusBox) update(f func(*Status)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.st.State
	f(&b.st)
	if b.st.State != old {
		b.st.Since = time.Now()
	}
	if m := b.m; m != nil {
		m.Committed.Set(float64(b.st.Committed))
		m.WithoutBackup.Set(float64(len(b.st.WithoutBackup)))
		for _, s := range allGroupStates {
			v := 0.0
			if s == b.st.State {
				v = 1
			}
			m.State.WithLabelValues(s).Set(v)
		}
	}
}

// Status reports the coordinator's view of its group; safe for concurrent
// use with Run.
func (c *Coordinator) Status() Status {
	c.box.mu.Lock()
	defer c.box.mu.Unlock()
	st := c.box.st
	st.Role = "coordinator"
	if st.State == "" {
		st.State = StateStarting
	}
	st.WithoutBackup = slices.Clone(st.WithoutBackup)
	return st
}

// noteRound records a held round.
func (c *Coordinator) noteRound(st RoundStats) {
	c.box.update(func(s *Status) {
		s.State, s.Held, s.Committed = StateCommitting, c.held, c.committed()
		s.Rounds++
		s.LastCommit, s.LastSkew, s.WithoutBackup = st.Commit, st.Skew, nil
	})
	if m := c.box.m; m != nil {
		m.Rounds.Inc()
		m.Commit.Observe(st.Commit.Seconds())
		m.Skew.Observe(st.Skew.Seconds())
	}
}

// noteState records a state change (and the group's committed round).
func (c *Coordinator) noteState(state string) {
	c.box.update(func(s *Status) {
		s.State, s.Held, s.Committed = state, c.held, c.committed()
		if state == StateWithoutBackup {
			s.WithoutBackup = s.WithoutBackup[:0]
			for name := range c.backupless {
				s.WithoutBackup = append(s.WithoutBackup, name)
			}
			slices.Sort(s.WithoutBackup)
		}
	})
}
