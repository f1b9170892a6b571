// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Agent states, exported as the resilire_state gauge (1 for the current
// state) and in the status JSON.
const (
	StateConnecting  = "connecting"  // primary: no backup yet, output held
	StateSyncing     = "syncing"     // both: initial synchronisation running
	StateProtected   = "protected"   // primary: epochs acked by the backup
	StateBlocked     = "blocked"     // primary: backup lost, output held (block)
	StateUnprotected = "unprotected" // primary: backup lost, output flows (continue)
	StateWaiting     = "waiting"     // backup: nothing committed yet
	StateStandby     = "standby"     // backup: a committed checkpoint is held
	StateFencing     = "fencing"     // backup: primary lost, fence running
	StateFenceFailed = "fence-failed"
	StateActive      = "active"      // backup: the guest runs here now
	StateHandedOver  = "handed-over" // primary: switchover done, the guest runs on the backup now
	StateStopped     = "stopped"
)

var allStates = []string{StateConnecting, StateSyncing, StateProtected, StateBlocked,
	StateUnprotected, StateWaiting, StateStandby, StateFencing, StateFenceFailed, StateActive, StateHandedOver, StateStopped}

// Metrics are the Prometheus series of one agent (one protected VM).
type Metrics struct {
	// Pause is how long the guest stayed paused per epoch (type II downtime).
	Pause prometheus.Histogram
	// Epoch is the time from pause to release (or apply, on the backup).
	Epoch prometheus.Histogram
	// AckLatency is the time from END sent to ACK received.
	AckLatency prometheus.Histogram
	// DirtyPages counts pages harvested (primary) or applied (backup).
	DirtyPages prometheus.Counter
	// WireBytes counts checkpoint bytes sent (primary) or received (backup).
	WireBytes prometheus.Counter
	// Checkpoints counts checkpoints by result: acked, applied, refused,
	// skipped (the guest could not be paused).
	Checkpoints *prometheus.CounterVec
	// HeldBytes is the output held waiting for an ACK (from OutputStats).
	HeldBytes prometheus.Gauge
	// Drops is the count of held frames the bounded buffer dropped.
	Drops prometheus.Gauge
	// State is 1 for the agent's current state, 0 for the others.
	State *prometheus.GaugeVec
	// DirtyTracker is 1 for the dirty-tracking mechanism the primary's
	// domain uses (label mechanism), when it reports one.
	DirtyTracker *prometheus.GaugeVec
	// Scrubs counts memory scrubs by result (ok, diverged).
	Scrubs *prometheus.CounterVec
	// ScrubDivergedPages is the pages the last scrub named as different
	// (primary); ScrubDivergedChunks the chunks that differed (backup).
	ScrubDivergedPages, ScrubDivergedChunks prometheus.Gauge
}

// NewMetrics registers the series on reg (a fresh registry if nil),
// labelled with the agent's role and VM.
func NewMetrics(reg prometheus.Registerer, role, vm string) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	cl := prometheus.Labels{"role": role, "vm": vm}
	buckets := []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5}
	m := &Metrics{
		Pause: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "resilire_pause_seconds",
			Help: "Time the guest stayed paused per epoch.", ConstLabels: cl, Buckets: buckets}),
		Epoch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "resilire_epoch_seconds",
			Help: "Time from pause to release (primary) or from BEGIN to ACK (backup).", ConstLabels: cl, Buckets: buckets}),
		AckLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "resilire_ack_latency_seconds",
			Help: "Time from the end of a checkpoint on the wire to its ACK.", ConstLabels: cl, Buckets: buckets}),
		DirtyPages: prometheus.NewCounter(prometheus.CounterOpts{Name: "resilire_dirty_pages_total",
			Help: "Pages carried by checkpoints.", ConstLabels: cl}),
		WireBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "resilire_wire_bytes_total",
			Help: "Checkpoint bytes on the wire.", ConstLabels: cl}),
		Checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "resilire_checkpoints_total",
			Help: "Checkpoints by result (acked, applied, refused, skipped).", ConstLabels: cl}, []string{"result"}),
		HeldBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilire_held_bytes",
			Help: "Guest output held until its epoch is acknowledged.", ConstLabels: cl}),
		Drops: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilire_output_drops",
			Help: "Held frames dropped because the output buffer (or, on path redirect, the injection tap's queue) was full.", ConstLabels: cl}),
		State: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "resilire_state",
			Help: "1 for the agent's current state.", ConstLabels: cl}, []string{"state"}),
		DirtyTracker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "resilire_dirty_tracker",
			Help: "1 for the dirty-tracking mechanism of the protected domain (uffd-wp, hash, ...).", ConstLabels: cl}, []string{"mechanism"}),
		Scrubs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "resilire_scrubs_total",
			Help: "Memory scrubs (replica against primary hash tree) by result: ok, diverged.", ConstLabels: cl}, []string{"result"}),
		ScrubDivergedPages: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilire_scrub_diverged_pages",
			Help: "Pages the last scrub found different on the backup (primary; 0 = in sync). An alarm.", ConstLabels: cl}),
		ScrubDivergedChunks: prometheus.NewGauge(prometheus.GaugeOpts{Name: "resilire_scrub_diverged_chunks",
			Help: "Chunks of pages the last scrub found different (backup; 0 = in sync). An alarm.", ConstLabels: cl}),
	}
	reg.MustRegister(m.Pause, m.Epoch, m.AckLatency, m.DirtyPages, m.WireBytes, m.Checkpoints, m.HeldBytes, m.Drops, m.State, m.DirtyTracker,
		m.Scrubs, m.ScrubDivergedPages, m.ScrubDivergedChunks)
	return m
}

// setState marks s as the current state.
func (m *Metrics) setState(s string) {
	for _, x := range allStates {
		v := 0.0
		if x == s {
			v = 1
		}
		m.State.WithLabelValues(x).Set(v)
	}
}
