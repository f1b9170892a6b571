// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Ordering across release queues.
//
// Release spreads held frames over several tap queues, one writer goroutine
// per queue, because one write() per frame runs the whole receive path (tap
// ingress program, redirect, bridge, veth) in the writer's thread and one
// thread cannot go faster than that path. Order still holds per flow:
//
//  1. flowHash maps every frame of a flow (5-tuple for TCP/UDP, address pair
//     and protocol for other IP, Ethernet header otherwise) to one queue;
//  2. Release hands each writer its frames in capture order and a writer
//     writes them one after the other;
//  3. each writer is locked to an OS thread pinned to one CPU, so the frames
//     it writes enter the same per-CPU backlog (the tap ingress program's
//     bpf_redirect queues them there) and leave it in FIFO order;
//  4. Release returns only when every writer is done, and releases (and
//     stragglers) are serialized by Buffer.wmu, so no frame of a later call
//     can overtake one of an earlier call.
//
// Frames of different flows may interleave differently than they were
// captured; no protocol relies on cross-flow order. With Queues == 1 the
// capture order is kept globally.
//
// Why pinned, and one queue per CPU, by default: step 3 needs the pin. A
// write normally runs the frame's whole receive path before it returns,
// but under load the kernel defers that work to ksoftirqd; an unpinned
// writer that migrates between two writes of one flow would then put them
// in two CPUs' backlogs, which can drain in either order. Unpinning did
// not buy speed either: side by side on the 2-CPU bench box, 64-byte
// releases cost 240k-280k frames per writer CPU-second pinned or not, and
// wall-clock rates varied more between runs than between the two modes.
// More queues than CPUs (4 on 2) were no faster than 2.

// writer owns one tap queue and writes the frames Release gives it.
type writer struct {
	pace *pacer // shared by the writers; nil: no pacing
	fd   int
	cpu  int // CPU the writer's thread is pinned to, -1 for none
	work chan []frameRef
	done chan writeResult
}

type writeResult struct {
	frames, bytes, errors uint64
	cpu                   time.Duration // writer threads' CPU time (user+sys)
	err                   error
}

// threadCPU is the calling thread's CPU time (the writer is locked to it).
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func newWriter(fd, cpu int) *writer {
	w := &writer{fd: fd, cpu: cpu, work: make(chan []frameRef), done: make(chan writeResult)}
	go w.run()
	return w
}

// run writes batches until work is closed. The thread is locked and pinned
// for the ordering argument above.
func (w *writer) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if w.cpu >= 0 {
		var set unix.CPUSet
		set.Set(w.cpu)
		_ = unix.SchedSetaffinity(0, &set) // best effort: ordering then rests on steps 1, 2 and 4
	}
	for batch := range w.work {
		var res writeResult
		start := threadCPU()
		for i := range batch {
			if err := writeFrame(w.fd, batch[i].data); err != nil {
				res.errors++
				if res.err == nil {
					res.err = err
				}
				continue
			}
			res.frames++
			res.bytes += uint64(len(batch[i].data) - VnetHdrLen)
			w.pace.wrote(res.frames)
		}
		res.cpu = threadCPU() - start
		w.done <- res
	}
}

// writeFrame writes one virtio-net header + frame. A tap never returns a
// short write; EAGAIN (a full socket in tests) waits for room.
func writeFrame(fd int, b []byte) error {
	for tries := 0; ; tries++ {
		n, err := unix.Write(fd, b)
		switch {
		case err == nil && n == len(b):
			return nil
		case err == nil:
			return fmt.Errorf("tap write: short write %d of %d", n, len(b))
		case errors.Is(err, unix.EAGAIN) && tries < 1000:
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(pfd, 100)
		case errors.Is(err, unix.EINTR):
		default:
			return fmt.Errorf("tap write: %w", err)
		}
	}
}

// writers is the set of release queues.
type writers struct {
	pace  *pacer
	ws    []*writer
	parts [][]frameRef // per-queue scratch, reused between calls
}

func newWriters(fds []int, pin bool) *writers {
	var cpus []int
	if pin {
		var set unix.CPUSet
		if unix.SchedGetaffinity(0, &set) == nil {
			for c := 0; c < len(set)*64 && len(cpus) < set.Count(); c++ {
				if set.IsSet(c) {
					cpus = append(cpus, c)
				}
			}
		}
	}
	wr := &writers{parts: make([][]frameRef, len(fds))}
	for i, fd := range fds {
		cpu := -1
		if len(cpus) > 0 {
			cpu = cpus[i%len(cpus)]
		}
		wr.ws = append(wr.ws, newWriter(fd, cpu))
	}
	return wr
}

// write sends every frame of list, in order, spread by flow hash, and waits
// for all writers. The caller holds Buffer.wmu.
func (wr *writers) write(list []*arena) writeResult {
	n := uint32(len(wr.ws))
	for i := range wr.parts {
		wr.parts[i] = wr.parts[i][:0]
	}
	for _, a := range list {
		for _, f := range a.frames {
			q := f.hash % n
			wr.parts[q] = append(wr.parts[q], f)
		}
	}
	return wr.dispatch()
}

// setPacer makes the writers pace against p (pace.go). Call it before the
// first release: the writers read it after receiving work.
func (wr *writers) setPacer(p *pacer) {
	wr.pace = p
	for _, w := range wr.ws {
		w.pace = p
	}
}

// dispatch hands the filled parts to their writers and sums the results.
func (wr *writers) dispatch() writeResult {
	wr.pace.start()
	for i, p := range wr.parts {
		if len(p) > 0 {
			wr.ws[i].work <- p
		}
	}
	var sum writeResult
	for i, p := range wr.parts {
		if len(p) == 0 {
			continue
		}
		r := <-wr.ws[i].done
		sum.frames += r.frames
		sum.bytes += r.bytes
		sum.errors += r.errors
		sum.cpu += r.cpu
		if sum.err == nil {
			sum.err = r.err
		}
	}
	return sum
}

// writeOne releases a single frame (a straggler) on its flow's queue.
func (wr *writers) writeOne(f frameRef) writeResult {
	for i := range wr.parts {
		wr.parts[i] = wr.parts[i][:0]
	}
	q := f.hash % uint32(len(wr.ws))
	wr.parts[q] = append(wr.parts[q], f)
	return wr.dispatch()
}

func (wr *writers) close() {
	for _, w := range wr.ws {
		close(w.work)
	}
}
