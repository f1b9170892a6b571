// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/resilire/resilire/dataplane"
)

// Benchmark sizes: the whole table must run in about two minutes.
const (
	probeCount    = 1500                   // open-loop probes per latency run
	probeInterval = time.Millisecond       // mean gap between probes (±50 %)
	tcpBaseDur    = 3 * time.Second        // unbuffered TCP run
	tcpDur10      = 6 * time.Second        // TCP run at 10 ms epochs
	tcpDur50      = 8 * time.Second        // TCP run at 50 ms epochs (still ramping; see report)
	releaseFrames = 200000                 // 64-byte frames per release run
	tcpBufMax     = "4096 131072 67108864" // tcp_wmem / tcp_rmem: 64 MB max
	// The guest's congestion control. This host defaults to BBR, whose
	// min_rtt filter sees ~0 under output commit (a segment sent just
	// before a release is acked at once), so its cwnd (2 x bw x min_rtt)
	// collapses. CUBIC is the kernel's usual default.
	tcpCC = "cubic"
	// Path B holds what its reader has not read yet in the tap's queue
	// (txqueuelen 10000, drops not counted): keep its run below that.
	releaseFramesB = 8000
)

// benchBound holds a whole 64 MB TCP window plus what is in flight.
const benchBound = 256 << 20

// buffered starts a ring-path Buffer with an epoch loop (commit delay 0);
// epoch 0 means no data plane at all (the unbuffered baseline). stop
// returns a one-line summary of drops.
func (r *nsRig) buffered(tb testing.TB, epoch time.Duration, noPin bool) (stop func() string) {
	if epoch == 0 {
		return func() string { return "" }
	}
	p, b := r.attach(tb, dataplane.PathRing, Options{MaxBytes: benchBound, NoPin: noPin})
	ctx, cancel := context.WithCancel(context.Background())
	loop := timedLoop(ctx, b, epoch)
	return func() string {
		cancel()
		ls := <-loop
		if ls.err != nil {
			tb.Fatal(ls.err)
		}
		s := b.Stats()
		c, _ := p.Counters()
		n := time.Duration(max(ls.n, 1))
		return fmt.Sprintf("held %d (GSO %d), bound drops %d, ring full %d; per epoch: tick late %v, Advance %v, Release %v",
			s.Held, s.HeldGSO, s.Dropped, c.RingFull, (ls.late / n).Round(time.Microsecond),
			(ls.adv / n).Round(time.Microsecond), (ls.rel / n).Round(time.Microsecond))
	}
}

// loopStats are the epoch loop's own delays, summed over n epochs.
type loopStats struct {
	n              int
	late, adv, rel time.Duration
	err            error
}

// timedLoop is epochLoop measuring how late each tick fires and how long
// Advance and Release take: the parts of the added latency that are not
// the epoch/2 floor.
func timedLoop(ctx context.Context, b *Buffer, interval time.Duration) <-chan loopStats {
	out := make(chan loopStats, 1)
	go func() {
		var ls loopStats
		next := time.Now().Add(interval)
		for {
			select {
			case <-ctx.Done():
				out <- ls
				return
			case <-time.After(time.Until(next)):
			}
			t0 := time.Now()
			e, err := b.Advance()
			t1 := time.Now()
			if err == nil {
				err = b.Release(e)
			}
			if err != nil {
				ls.err = err
				out <- ls
				return
			}
			ls.n++
			ls.late += t0.Sub(next)
			ls.adv += t1.Sub(t0)
			ls.rel += time.Since(t1)
			// Like time.Ticker, drop ticks rather than fire back to back
			// after a stall, so "late" is per tick, not accumulated lag.
			if next = next.Add(interval); time.Until(next) < 0 {
				next = time.Now().Add(interval)
			}
		}
	}()
	return out
}

// probeLatency sends open-loop UDP probes guest->client (one per 1 ms
// ±50 %, whatever the replies) and returns one-way delays in ms.
func probeLatency(tb testing.TB, epoch time.Duration, noPin bool) ([]float64, string) {
	r := newNSRig(tb)
	r.staticNeighbors(tb)
	stop := r.buffered(tb, epoch, noPin)
	g, c := r.udpPair(tb, 7200)
	// The client kernel stamps each probe on receipt (SO_TIMESTAMPNS), so
	// the reader's own wake-up and the burst it reads are not counted.
	rc, err := c.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) })
		err = errors.Join(err, cerr)
	}
	if err != nil {
		tb.Fatal(err)
	}
	var lat []float64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf, oob := make([]byte, 64), make([]byte, 128)
		for len(lat) < probeCount {
			if err := c.SetReadDeadline(time.Now().Add(epoch + time.Second)); err != nil {
				return
			}
			n, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
			if err != nil {
				return
			}
			if rx, ok := rxStamp(oob[:oobn]); ok && n >= 8 {
				lat = append(lat, float64(rx-int64(binary.BigEndian.Uint64(buf)))/1e6)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	msg := make([]byte, 16)
	next := time.Now()
	for i := 0; i < probeCount; i++ {
		next = next.Add(time.Duration(float64(probeInterval) * (0.5 + rng.Float64())))
		time.Sleep(time.Until(next))
		binary.BigEndian.PutUint64(msg, uint64(time.Now().UnixNano()))
		_, _ = g.Write(msg) // a lost probe is a missing sample
	}
	<-done
	info := stop()
	if len(lat) < probeCount*9/10 {
		tb.Fatalf("only %d of %d probes arrived", len(lat), probeCount)
	}
	return lat, info
}

// rxStamp extracts the SCM_TIMESTAMPNS receive time (Unix ns).
func rxStamp(oob []byte) (int64, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return sec*1e9 + nsec, true
		}
	}
	return 0, false
}

type dist struct{ p50, p90, p99, mean float64 }

func summarize(v []float64) dist {
	s := slices.Clone(v)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return dist{q(0.5), q(0.9), q(0.99), sum / float64(len(s))}
}

// tcpThroughput streams guest->client for dur with 64 MB socket buffer
// limits and returns the receiver's Gbit/s.
func tcpThroughput(tb testing.TB, epoch, dur time.Duration) (float64, string) {
	r := newNSRig(tb)
	for _, side := range []struct {
		ns   func(func() error) error
		file string
	}{
		{func(f func() error) error { return r.Guest.Do(f) }, "tcp_wmem"},
		{func(f func() error) error { return r.Client.Do(f) }, "tcp_rmem"},
	} {
		if err := side.ns(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/"+side.file, []byte(tcpBufMax), 0o644)
		}); err != nil {
			tb.Fatal(err)
		}
	}
	stop := r.buffered(tb, epoch, false)
	var ln net.Listener
	if err := r.Client.Do(func() (err error) {
		ln, err = net.Listen("tcp4", net.JoinHostPort(r.ClientIP.String(), "7300"))
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n     int64
		first time.Time
		last  time.Time
		err   error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		var out result
		buf := make([]byte, 1<<20)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if out.n == 0 {
					out.first = time.Now()
				}
				out.n += int64(n)
				out.last = time.Now()
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					out.err = err
				}
				res <- out
				return
			}
		}
	}()
	var conn net.Conn
	if err := r.Guest.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, tcpCC) })
			return errors.Join(err, serr)
		}}
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if err := conn.SetWriteDeadline(time.Now().Add(dur)); err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := conn.Write(buf); err != nil {
			break // the deadline ends the run
		}
	}
	conn.Close()
	out := <-res
	if out.err != nil || out.n == 0 {
		tb.Fatalf("tcp receiver: %d bytes, %v", out.n, out.err)
	}
	info := stop()
	var retrans string
	if err := r.Guest.Do(func() error { retrans = tcpRetrans(); return nil }); err != nil {
		tb.Fatal(err)
	}
	return float64(out.n) * 8 / out.last.Sub(out.first).Seconds() / 1e9, info + ", retransmits " + retrans
}

// tcpRetrans reads RetransSegs from the calling thread's namespace.
func tcpRetrans() string {
	b, err := os.ReadFile("/proc/thread-self/net/snmp") // /proc/net is the process's netns, not this thread's
	if err != nil {
		return "?"
	}
	var head []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "RetransSegs" && i < len(f) {
				return f[i]
			}
		}
	}
	return "?"
}

// BenchmarkDataplane prints the data-plane table (make bench-dataplane).
// Run it with -benchtime=1x: one iteration is the whole table.
func BenchmarkDataplane(b *testing.B) {
	for i := 0; i < b.N; i++ {
		w := os.Stdout
		baseLat, _ := probeLatency(b, 0, false)
		base := summarize(baseLat)
		baseTCP, _ := tcpThroughput(b, 0, tcpBaseDur)
		fmt.Fprintf(w, "\nAdded latency, open-loop UDP prober guest->client (%d probes, 1 ms ±50 %%, kernel rx stamps), path ring, commit delay 0\n", probeCount)
		fmt.Fprintf(w, "%-9s %8s %8s %8s %8s %12s %14s %6s\n", "epoch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "added mean", "target<=", "ok")
		fmt.Fprintf(w, "%-9s %8.3f %8.3f %8.3f %8.3f %12s %14s %6s\n", "none", base.p50, base.p90, base.p99, base.mean, "-", "-", "-")
		tcp, tcpInfo := map[time.Duration]float64{}, map[time.Duration]string{}
		for _, c := range []struct {
			ep    time.Duration
			noPin bool
		}{{10 * time.Millisecond, false}, {10 * time.Millisecond, true}, {50 * time.Millisecond, false}} {
			ep := c.ep
			lat, info := probeLatency(b, ep, c.noPin)
			if c.noPin {
				info = "unpinned writers; " + info
			}
			d := summarize(lat)
			added := d.mean - base.mean
			target := float64(ep)/2e6 + 0.15
			fmt.Fprintf(w, "%-9v %8.3f %8.3f %8.3f %8.3f %12.3f %14.3f %6v   %s\n", ep, d.p50, d.p90, d.p99, d.mean, added, target, added <= target, info)
		}
		tcp[10*time.Millisecond], tcpInfo[10*time.Millisecond] = tcpThroughput(b, 10*time.Millisecond, tcpDur10)
		tcp[50*time.Millisecond], tcpInfo[50*time.Millisecond] = tcpThroughput(b, 50*time.Millisecond, tcpDur50)
		fmt.Fprintf(w, "\nTCP guest->client, one stream, tcp_wmem/tcp_rmem max 64 MB\n")
		fmt.Fprintf(w, "%-9s %8s %10s %12s %8s %6s\n", "epoch", "run", "Gbit/s", "unbuffered", "ratio", "ok")
		for _, ep := range []time.Duration{10 * time.Millisecond, 50 * time.Millisecond} {
			dur := map[time.Duration]time.Duration{10 * time.Millisecond: tcpDur10, 50 * time.Millisecond: tcpDur50}[ep]
			ok := "-"
			if ep == 10*time.Millisecond {
				ok = fmt.Sprint(tcp[ep]/baseTCP >= 0.6)
			}
			fmt.Fprintf(w, "%-9v %8v %10.2f %12.2f %8.2f %6s   %s\n", ep, dur, tcp[ep], baseTCP, tcp[ep]/baseTCP, ok, tcpInfo[ep])
		}
		fmt.Fprintf(w, "\n64-byte UDP release rate (%d frames, %d on path redirect; 8 flows; pps = frames / Release wall time)\n", releaseFrames, releaseFramesB)
		fmt.Fprintf(w, "%-9s %7s %7s %-13s %10s %12s %10s %14s %6s\n", "path", "queues", "pinned", "sink", "wall", "pps", "cpu", "frames/cpu-s", ">=1M")
		for _, c := range []struct {
			path     dataplane.CapturePath
			queues   int
			noPin    bool
			sinkDown bool
		}{
			{dataplane.PathRing, 1, false, false}, {dataplane.PathRing, 2, false, false}, {dataplane.PathRing, 2, true, false},
			{dataplane.PathRing, 4, false, false}, {dataplane.PathRing, 2, false, true}, {dataplane.PathRedirect, 2, false, false},
		} {
			n := releaseFrames
			if c.path == dataplane.PathRedirect {
				n = releaseFramesB
			}
			s := releaseRate(b, c.path, c.queues, n, 8, c.noPin, c.sinkDown)
			pps := float64(s.LastFrames) / s.LastRelease.Seconds()
			sink := "client socket"
			if c.sinkDown {
				sink = "bridge drop"
			}
			fmt.Fprintf(w, "%-9v %7d %7v %-13s %10v %12.0f %10v %14.0f %6v\n", c.path, c.queues, !c.noPin, sink, s.LastRelease.Round(time.Millisecond),
				pps, s.LastCPU.Round(time.Millisecond), float64(s.LastFrames)/s.LastCPU.Seconds(), pps >= 1e6)
		}
	}
}
