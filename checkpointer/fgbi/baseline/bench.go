// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/resilire/resilire/checkpointer/fgbi"
	"golang.org/x/sys/unix"
)

// Source yields the epochs of a dirty-memory trace: ascending page numbers
// and their contents; io.EOF after the last. The first epoch is the full
// image; it primes every codec and is not measured.
type Source interface {
	Next() (pfns []uint64, data []byte, err error)
}

// Result is one codec's totals over the measured epochs.
type Result struct {
	Name      string
	Wire      int64
	Encode    time.Duration // wall time
	Decode    time.Duration // wall time, decode and apply
	EncodeCPU time.Duration // process CPU time (all cores)
	DecodeCPU time.Duration
	Verified  bool // the replica equals the traced memory at the end
	Err       error
	codec     Codec
	replica   []byte
	stream    []byte
	firstWire int64
}

// Report is a benchmark run over one trace.
type Report struct {
	Trace      string
	MemBytes   uint64
	Epochs     int   // measured epochs (after the full image)
	DirtyPages int64 // pages over the measured epochs
	Runs       int   // runs merged by Best (times are the fastest run's)
	Results    []Result
}

// Best merges another run of the same trace into rep: per codec, the
// fastest encode and decode times (a shared machine only ever slows a run
// down); wire bytes and verification must agree.
func (rep *Report) Best(o *Report) error {
	if len(o.Results) != len(rep.Results) || o.DirtyPages != rep.DirtyPages {
		return fmt.Errorf("runs of %s differ", rep.Trace)
	}
	for i := range rep.Results {
		r, x := &rep.Results[i], o.Results[i]
		if r.Wire != x.Wire {
			return fmt.Errorf("%s: %d wire bytes in one run, %d in another", r.Name, r.Wire, x.Wire)
		}
		r.Verified = r.Verified && x.Verified
		r.Err = errors.Join(r.Err, x.Err)
		r.Encode, r.Decode = min(r.Encode, x.Encode), min(r.Decode, x.Decode)
		r.EncodeCPU, r.DecodeCPU = min(r.EncodeCPU, x.EncodeCPU), min(r.DecodeCPU, x.DecodeCPU)
	}
	rep.Runs += o.Runs
	return nil
}

// StandardCodecs returns (a)..(e) for a guest of pages pages, FGBI with the
// given block size; FGBI runs on one worker (the per-core figure) and, as a
// last row, on workers goroutines.
func StandardCodecs(pages uint64, block, workers int) ([]Codec, error) {
	cs := []Codec{Raw{}, NewXen(), NewXBZRLE(64 << 20), NewS2(), NewZstd()}
	mk := func(label string, share, comp bool, w int) error {
		f, err := NewFGBI(label, fgbi.Config{MemSize: pages * PageSize, BlockSize: block,
			Sharing: share, Compression: comp, Workers: w})
		cs = append(cs, f)
		return err
	}
	err := errors.Join(
		mk(fmt.Sprintf("(e) fgbi %d B: detection only", block), false, false, 1),
		mk(fmt.Sprintf("(e) fgbi %d B: + sharing", block), true, false, 1),
		mk(fmt.Sprintf("(e) fgbi %d B: + compression", block), true, true, 1),
		mk(fmt.Sprintf("(e) fgbi %d B: full, %d workers", block, workers), true, true, workers))
	return cs, err
}

// Run feeds every epoch of src through every codec, each with its own
// replica, timing encode and decode+apply, and verifies the replicas.
func Run(name string, src Source, pages uint64, codecs []Codec) (*Report, error) {
	rep := &Report{Trace: name, MemBytes: pages * PageSize, Runs: 1}
	truth := make([]byte, rep.MemBytes)
	for _, c := range codecs {
		rep.Results = append(rep.Results, Result{Name: c.Name(), codec: c, replica: make([]byte, rep.MemBytes)})
	}
	for ep := 0; ; ep++ {
		pfns, data, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("trace epoch %d: %w", ep, err)
		}
		for i, p := range pfns {
			if p >= pages {
				return nil, fmt.Errorf("trace epoch %d: page %d beyond %d", ep, p, pages)
			}
			copy(truth[p*PageSize:], data[i*PageSize:(i+1)*PageSize])
		}
		if ep > 0 {
			rep.Epochs++
			rep.DirtyPages += int64(len(pfns))
		}
		// Collect the trace reader's garbage now, so that the process CPU
		// time charged to a codec is its own work.
		runtime.GC()
		for i := range rep.Results {
			rep.Results[i].epoch(ep > 0, pfns, data)
		}
	}
	for i := range rep.Results {
		r := &rep.Results[i]
		r.Verified = r.Err == nil && bytes.Equal(r.replica, truth)
		r.replica, r.stream = nil, nil
	}
	return rep, nil
}

// epoch runs one epoch through r's codec; measured says whether it counts.
func (r *Result) epoch(measured bool, pfns []uint64, data []byte) {
	if r.Err != nil {
		return
	}
	c0, t0 := cpuNow(), time.Now()
	r.stream, r.Err = r.codec.Encode(r.stream[:0], pfns, data)
	c1, t1 := cpuNow(), time.Now()
	if r.Err == nil {
		r.Err = r.codec.Decode(r.stream, r.replica)
	}
	c2, t2 := cpuNow(), time.Now()
	if !measured {
		r.firstWire = int64(len(r.stream))
		return
	}
	r.Wire += int64(len(r.stream))
	r.Encode += t1.Sub(t0)
	r.Decode += t2.Sub(t1)
	r.EncodeCPU += c1 - c0
	r.DecodeCPU += c2 - c1
}

// cpuNow is the process's CPU time: on a shared machine wall time counts
// other tenants' load, CPU time only ours (GB/s per core = bytes / CPU time).
func cpuNow() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// Print writes the report as one table.
func (rep *Report) Print(w io.Writer) error {
	in := rep.DirtyPages * PageSize
	fmt.Fprintf(w, "trace %s: %d MiB page space, %d measured epochs, %d dirty pages (%.1f MiB of dirty input), best of %d runs\n",
		rep.Trace, rep.MemBytes>>20, rep.Epochs, rep.DirtyPages, float64(in)/(1<<20), rep.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "codec\twire MiB\tratio to (a)\tencode GB/s\tper cpu\tdecode+apply GB/s\tper cpu\tverified\t")
	var raw int64
	for _, r := range rep.Results {
		if raw == 0 {
			raw = r.Wire
		}
		status := "yes"
		switch {
		case r.Err != nil:
			status = "error: " + r.Err.Error()
		case !r.Verified:
			status = "NO"
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.3f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t\n", r.Name, float64(r.Wire)/(1<<20),
			ratio(r.Wire, raw), gbps(in, r.Encode), gbps(in, r.EncodeCPU), gbps(in, r.Decode), gbps(in, r.DecodeCPU), status)
	}
	return tw.Flush()
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func gbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds() / 1e9
}

// MemoryNote describes FGBI's encoder memory for a block size, per GiB of
// guest and fixed.
func MemoryNote(block int) string {
	per, fixed, err := fgbi.MemoryOverhead(fgbi.Config{MemSize: 1 << 30, BlockSize: block})
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("FGBI encoder memory at %d B blocks: %.1f MiB per GiB of guest (%.2f%%) + %.1f MiB fixed (shadow cache and content index)",
		block, float64(per)/(1<<20), float64(per)/(1<<30)*100, float64(fixed)/(1<<20))
}
