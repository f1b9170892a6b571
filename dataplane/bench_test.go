// SPDX-License-Identifier: Apache-2.0

package dataplane

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
)

// BenchmarkCapture measures the in-kernel cost per frame of each capture
// verdict (BPF_PROG_TEST_RUN, so without the rest of the stack): pass,
// path-B redirect, and the path-A copy into the ring, with the two-copy
// program and with the one the kernel gets (capture_copy where it can) (the ring is drained
// between batches, outside the timed runs, so no run hits "ring full").
func BenchmarkCapture(b *testing.B) {
	for _, bc := range []struct {
		path    CapturePath
		mode    Mode
		twoCopy bool // force the two-copy capture program
	}{{PathRing, ModePass, false}, {PathRedirect, ModeBuffer, false}, {PathRing, ModeBuffer, true}, {PathRing, ModeBuffer, false}} {
		name := bc.path.String()
		if bc.twoCopy {
			name += "-2copy"
		}
		for _, size := range []int{64, 1500, 3000} {
			b.Run(fmt.Sprintf("%s/%s/%dB", bc.mode, name, size), func(b *testing.B) {
				if bc.twoCopy {
					old := oneCopy
					oneCopy = func() bool { return false }
					defer func() { oneCopy = old }()
				}
				benchCapture(b, bc.path, bc.mode, size)
			})
		}
	}
}

func benchCapture(b *testing.B, path CapturePath, mode Mode, size int) {
	objs := loadForBench(b, path, mode)
	frame := udpFrame(b, size, 0)
	const ringBytes = 64 << 20
	batch := ringBytes / (size + RecordHeaderLen + 8) / 2
	var rd *ringbuf.Reader
	if path == PathRing && mode == ModeBuffer {
		var err error
		if rd, err = ringbuf.NewReader(objs.maps[mapCapRing]); err != nil {
			b.Fatal(err)
		}
		defer rd.Close()
	}
	var total time.Duration
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		_, per, err := objs.progs[progCapture].Benchmark(frame, n, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += per * time.Duration(n)
		done += n
		if rd != nil {
			drain(b, rd)
		}
	}
	c, err := (&Port{name: "bench", objs: objs}).Counters()
	if err != nil {
		b.Fatal(err)
	}
	if c.RingFull != 0 || c.Errors != 0 {
		b.Fatalf("drops during the benchmark: %+v", c)
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/frame")
	b.ReportMetric(float64(size)*float64(b.N)/total.Seconds()/1e6, "MB/s")
	b.ReportMetric(0, "ns/op") // wall time includes draining; ns/frame is the measure
}

func loadForBench(b *testing.B, path CapturePath, mode Mode) *objects {
	b.Helper()
	return loadForTestTB(b, path, 64<<20, mode, 1)
}

func drain(b *testing.B, rd *ringbuf.Reader) {
	rd.SetDeadline(time.Now())
	for {
		if _, err := rd.Read(); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatal(err)
			}
			return
		}
	}
}
