// SPDX-License-Identifier: Apache-2.0

package checkpointer

import (
	"slices"
	"sync"
	"time"
)

// EpochSummary condenses the recent committed epochs for /status.
type EpochSummary struct {
	// Committed counts every epoch committed since the agent started.
	Committed uint64 `json:"committed"`
	// Window is how many recent epochs the other fields cover.
	Window int `json:"window"`
	// PauseP50 and PauseP99 are the guest's pause (type II downtime).
	PauseP50 time.Duration `json:"pause_p50_ns"`
	PauseP99 time.Duration `json:"pause_p99_ns"`
	PauseMax time.Duration `json:"pause_max_ns"`
	// WireBytesMean is the mean checkpoint size on the wire (the codec's
	// output: FGBI or raw).
	WireBytesMean float64 `json:"wire_bytes_mean"`
	// PageBytesMean is what a page-granular transfer of the same dirty
	// pages would carry (pages x 4096, no compression, no device state).
	PageBytesMean float64 `json:"page_bytes_mean"`
	// DirtyPagesMean is the mean number of dirty pages per epoch.
	DirtyPagesMean float64 `json:"dirty_pages_mean"`
	// DiskBytesMean is the mean disk data written per epoch (whole 4 KiB
	// blocks), DiskWireBytesMean its DISK records on the wire.
	DiskBytesMean     float64 `json:"disk_bytes_mean,omitempty"`
	DiskWireBytesMean float64 `json:"disk_wire_bytes_mean,omitempty"`
}

// EpochRing keeps the statistics of the last N committed epochs. Add it
// as PrimaryConfig.OnEpoch; it is safe for concurrent use.
type EpochRing struct {
	mu        sync.Mutex
	buf       []EpochStats
	next      int
	committed uint64
}

// NewEpochRing keeps the last n epochs (n >= 1).
func NewEpochRing(n int) *EpochRing { return &EpochRing{buf: make([]EpochStats, 0, max(n, 1))} }

// Add records one committed epoch.
func (r *EpochRing) Add(s EpochStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.committed++
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, s)
		return
	}
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
}

// Summary computes percentiles and means over the window; nil before the
// first epoch.
func (r *EpochRing) Summary() *EpochSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.buf)
	if n == 0 {
		return nil
	}
	pauses := make([]time.Duration, n)
	s := &EpochSummary{Committed: r.committed, Window: n}
	for i, e := range r.buf {
		pauses[i] = e.Pause
		s.WireBytesMean += float64(e.Bytes)
		s.PageBytesMean += float64(e.Pages) * PageSize
		s.DirtyPagesMean += float64(e.Pages)
		s.DiskBytesMean += float64(e.DiskBytes)
		s.DiskWireBytesMean += float64(e.DiskWireBytes)
	}
	slices.Sort(pauses)
	s.PauseP50, s.PauseP99, s.PauseMax = pauses[n/2], pauses[(n*99)/100], pauses[n-1]
	s.WireBytesMean /= float64(n)
	s.PageBytesMean /= float64(n)
	s.DirtyPagesMean /= float64(n)
	s.DiskBytesMean /= float64(n)
	s.DiskWireBytesMean /= float64(n)
	return s
}
