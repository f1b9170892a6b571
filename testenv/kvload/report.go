// SPDX-License-Identifier: Apache-2.0

package kvload

import (
	"fmt"
	"image/color"
	"sort"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Summary condenses a run.
type Summary struct {
	Requests, Acked int
	P50, P99, Max   time.Duration // latency of acknowledged requests
	// Outage is the longest time the client went without an
	// acknowledgement: from the last reply before the gap to the first
	// after it. Across a failover it is the client-observed downtime.
	Outage time.Duration
	// OutageAt is when that gap began, relative to the first request.
	OutageAt time.Duration
}

// Summarize computes latency percentiles and the longest outage.
func (r *Result) Summarize() Summary {
	s := Summary{Requests: len(r.Samples)}
	var lats []time.Duration
	var lastOK time.Time
	var t0 time.Time
	if len(r.Samples) > 0 {
		t0 = r.Samples[0].Start
		lastOK = t0
	}
	for _, x := range r.Samples {
		if !x.OK {
			continue
		}
		s.Acked++
		lats = append(lats, x.Latency)
		end := x.Start.Add(x.Latency)
		if gap := end.Sub(lastOK); gap > s.Outage {
			s.Outage, s.OutageAt = gap, lastOK.Sub(t0)
		}
		lastOK = end
	}
	if len(lats) > 0 {
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		s.P50 = lats[len(lats)/2]
		s.P99 = lats[len(lats)*99/100]
		s.Max = lats[len(lats)-1]
	}
	return s
}

// Mark is a vertical line on the timeline: an event at At since the first
// request.
type Mark struct {
	At    time.Duration
	Label string
}

// Plot writes a PNG timeline of request latency (ms) against time since the
// first request, failed requests in red, with a vertical line at mark (the
// moment the primary was killed; negative for none).
func (r *Result) Plot(path, title string, mark time.Duration) error {
	var marks []Mark
	if mark >= 0 {
		marks = append(marks, Mark{At: mark, Label: "primary killed"})
	}
	return r.PlotMarks(path, title, marks...)
}

// PlotMarks is Plot with any number of labelled events.
func (r *Result) PlotMarks(path, title string, marks ...Mark) error {
	if len(r.Samples) == 0 {
		return fmt.Errorf("plot %s: no samples", path)
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time since start (s)"
	p.Y.Label.Text = "request latency (ms)"
	t0 := r.Samples[0].Start
	var ok, bad plotter.XYs
	for _, x := range r.Samples {
		pt := plotter.XY{X: x.Start.Sub(t0).Seconds(), Y: float64(x.Latency) / float64(time.Millisecond)}
		if x.OK {
			ok = append(ok, pt)
		} else {
			bad = append(bad, pt)
		}
	}
	if err := addScatter(p, ok, color.RGBA{B: 200, A: 255}, "acknowledged"); err != nil {
		return err
	}
	if len(bad) > 0 {
		if err := addScatter(p, bad, color.RGBA{R: 220, A: 255}, "failed"); err != nil {
			return err
		}
	}
	colors := []color.RGBA{{R: 200, G: 120, A: 255}, {G: 150, A: 255}, {R: 150, B: 150, A: 255}, {R: 90, G: 90, B: 90, A: 255}}
	for i, m := range marks {
		line, err := plotter.NewLine(plotter.XYs{{X: m.At.Seconds(), Y: 0}, {X: m.At.Seconds(), Y: p.Y.Max}})
		if err != nil {
			return err
		}
		line.Color = colors[i%len(colors)]
		line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(line)
		p.Legend.Add(m.Label, line)
	}
	p.Legend.Top = true
	return p.Save(20*vg.Centimeter, 10*vg.Centimeter, path)
}

func addScatter(p *plot.Plot, pts plotter.XYs, c color.Color, name string) error {
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	sc.Color = c
	sc.Radius = vg.Points(1.5)
	sc.Shape = draw.CircleGlyph{}
	p.Add(sc)
	p.Legend.Add(name, sc)
	return nil
}
