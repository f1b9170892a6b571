// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// Summary describes a recorded trace: its size on disk and how many pages
// its epochs carry.
type Summary struct {
	Meta      Meta
	FileBytes int64   // size of the trace file
	Epoch0    int     // pages in epoch 0 (the full image)
	MeanPages float64 // mean pages per epoch after epoch 0
	MedPages  int     // median pages per epoch after epoch 0
	MaxPages  int     // largest epoch after epoch 0, in pages
}

// Summarize reads the whole trace in dir, verifying every epoch.
func Summarize(dir string) (Summary, error) {
	var s Summary
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		return s, fmt.Errorf("summarize: %w", err)
	}
	s.FileBytes = st.Size()
	r, err := Open(dir)
	if err != nil {
		return s, err
	}
	defer r.Close()
	s.Meta = r.Meta()
	var counts []int
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s, err
		}
		if e.Seq == 0 {
			s.Epoch0 = len(e.PFNs)
		} else {
			counts = append(counts, len(e.PFNs))
		}
	}
	if len(counts) > 0 {
		sum := 0
		for _, c := range counts {
			sum += c
		}
		s.MeanPages = float64(sum) / float64(len(counts))
		slices.Sort(counts)
		s.MedPages, s.MaxPages = counts[len(counts)/2], counts[len(counts)-1]
	}
	return s, nil
}

// String formats the summary on one line.
func (s Summary) String() string {
	m := s.Meta
	return fmt.Sprintf("%s: %d epochs every %d ms, memory %d pages (%.1f MiB), epoch 0 %d pages, later epochs mean %.0f median %d max %d pages (%.1f%% of memory per epoch), file %.2f MiB, mean pause %d us",
		m.Name, m.Epochs, m.IntervalMS, m.Pages, float64(m.Pages*PageSize)/(1<<20), s.Epoch0, s.MeanPages, s.MedPages, s.MaxPages,
		100*s.MeanPages/float64(max(m.Pages, 1)), float64(s.FileBytes)/(1<<20), m.PauseUS)
}
