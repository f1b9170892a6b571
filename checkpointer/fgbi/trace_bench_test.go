// SPDX-License-Identifier: Apache-2.0

package fgbi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer/trace"
)

// loadTrace reads every epoch of the trace in $FGBI_TRACE (a directory
// holding trace.rtr), or skips the benchmark when it is unset.
func loadTrace(b *testing.B) (pages uint64, pfns [][]uint64, data [][]byte) {
	dir := os.Getenv("FGBI_TRACE")
	if dir == "" {
		b.Skip("FGBI_TRACE is not set")
	}
	r, err := trace.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		pfns = append(pfns, append([]uint64(nil), e.PFNs...))
		data = append(data, append([]byte(nil), e.Data...))
	}
	return r.Meta().Pages, pfns, data
}

// BenchmarkTrace measures the full codec (sharing and compression, one
// worker) over a recorded trace: FGBI_TRACE=dir go test -bench Trace.
// Each iteration replays every epoch from a fresh encoder and decoder.
func BenchmarkTrace(b *testing.B) {
	pages, pfns, data := loadTrace(b)
	cfg := Config{MemSize: pages * PageSize, Sharing: true, Compression: true, Workers: 1}
	streams := make([][]byte, len(pfns))
	b.Run("encode", func(b *testing.B) {
		var n, cpu, wire int64
		for i := 0; i < b.N; i++ {
			enc, _ := NewEncoder(cfg)
			for k := range pfns {
				buf := bytes.NewBuffer(make([]byte, 0, len(data[k])+len(data[k])/8+4096))
				c0 := cpuNow()
				measured(k, func() {
					if _, err := enc.Encode(buf, uint64(k), pfns[k], data[k], nil); err != nil {
						b.Fatal(err)
					}
				})
				streams[k] = buf.Bytes()
				if k > 0 {
					cpu += int64(cpuNow() - c0)
					n += int64(len(data[k]))
					wire += int64(buf.Len())
				}
			}
		}
		reportPerPage(b, n, time.Duration(cpu))
		b.ReportMetric(float64(wire)/float64(n), "wire/raw")
	})
	b.Run("decode", func(b *testing.B) {
		var n int64
		var cpu int64
		for i := 0; i < b.N; i++ {
			dec, _ := NewDecoder(cfg)
			replica := make([]byte, cfg.MemSize)
			for k, s := range streams {
				c0 := cpuNow()
				measured(k, func() {
					st, err := dec.Decode(bytes.NewReader(s), replica)
					if err != nil {
						b.Fatal(err)
					}
					st.Apply(replica)
				})
				if k > 0 {
					cpu += int64(cpuNow() - c0)
					n += int64(len(data[k]))
				}
			}
		}
		reportPerPage(b, n, time.Duration(cpu))
	})
}

// measured runs fn labelled for profiles: epoch 0 (the full first copy,
// which the bench command does not count) gets phase=first, the others
// phase=measured (go tool pprof -tagfocus phase=measured).
func measured(k int, fn func()) {
	phase := "measured"
	if k == 0 {
		phase = "first"
	}
	pprof.Do(context.Background(), pprof.Labels("phase", phase), func(context.Context) { fn() })
}
