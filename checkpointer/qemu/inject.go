// SPDX-License-Identifier: Apache-2.0

//go:build linux && amd64

package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Syscall injection into a running process over ptrace, as CRIU's compel
// does: seize one thread, interrupt it, point it at a "syscall"
// instruction with our registers, let it run to the syscall's exit, read
// the result, put its registers back and detach. The thread notices
// nothing but a short stop.

// Restart codes a syscall interrupted by a ptrace stop leaves in rax
// (include/linux/errno.h, kernel-internal, stable since 2.6).
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// errInject marks a failed injection (ptrace refused, target gone, an
// unexpected stop); the caller falls back to hashing.
var errInject = errors.New("syscall injection")

// injector is a ptrace session on one thread of a target, held by one
// locked OS thread: ptrace requests must come from the tracer thread.
type injector struct {
	tid  int
	insn uint64 // address of a 0f 05 (syscall) in the target
	reqs chan func()
	// stuck: an injection failed after the seize, the thread may still
	// be traced (owned by the tracer goroutine).
	stuck bool
}

// newInjector finds a syscall instruction in pid's [vdso] and starts the
// tracer thread. Call close when done.
func newInjector(pid int) (*injector, error) {
	insn, err := findSyscallInsn(pid)
	if err != nil {
		return nil, err
	}
	in := &injector{tid: injectThread(pid), insn: insn, reqs: make(chan func())}
	go func() {
		runtime.LockOSThread()
		for f := range in.reqs {
			f()
		}
		// The thread goes back to the scheduler unless a detach failed:
		// then it exits with the goroutine, and with it the tracer
		// relationship. Not always, because a thread's exit also fires
		// the PR_SET_PDEATHSIG of processes forked from it (a QEMU
		// started with KillWithParent).
		if !in.stuck {
			runtime.UnlockOSThread()
		}
	}()
	return in, nil
}

func (in *injector) close() { close(in.reqs) }

// syscall runs nr(args) in the target thread and returns its raw result
// (a negative errno on failure).
func (in *injector) syscall(nr uint64, args ...uint64) (ret int64, err error) {
	done := make(chan struct{})
	in.reqs <- func() {
		ret, err = injectSyscall(in.tid, in.insn, nr, args...)
		in.stuck = in.stuck || err != nil
		close(done)
	}
	<-done
	return ret, err
}

// injectThread picks the thread to inject into: the lowest-numbered one
// other than the main thread (QEMU's call_rcu thread, asleep in a futex),
// else pid. Not the main thread, because when QEMU is our child (tests,
// benchmarks) os/exec's waiter on its pid would consume the ptrace stops of
// the leader; a non-leader's stops are only reported to wait(tid).
func injectThread(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return pid
	}
	best := pid
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil && tid != pid && (best == pid || tid < best) {
			best = tid
		}
	}
	return best
}

// injectSyscall is one seize-run-restore-detach cycle. It must run on the
// locked tracer thread.
func injectSyscall(tid int, insn, nr uint64, args ...uint64) (int64, error) {
	if err := unix.PtraceSeize(tid); err != nil {
		return 0, fmt.Errorf("%w: ptrace seize %d: %w", errInject, tid, err)
	}
	pending := 0 // a signal that arrived meanwhile, delivered at detach
	detach := func() { _ = unix.PtraceDetach(tid) }
	if err := unix.PtraceInterrupt(tid); err != nil {
		detach()
		return 0, fmt.Errorf("%w: ptrace interrupt: %w", errInject, err)
	}
	for { // wait for the interrupt's stop; signals meanwhile are kept
		ws, err := waitStop(tid)
		if err != nil {
			return 0, err
		}
		if uint32(ws)>>16 == unix.PTRACE_EVENT_STOP {
			break
		}
		pending = int(ws.StopSignal())
		_ = unix.PtraceCont(tid, 0)
		_ = unix.PtraceInterrupt(tid)
	}
	var saved unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &saved); err != nil {
		_ = unix.PtraceDetach(tid)
		return 0, fmt.Errorf("%w: get registers: %w", errInject, err)
	}
	back := restartRegs(saved)
	restore := func() error {
		if err := unix.PtraceSetRegs(tid, &back); err != nil {
			return fmt.Errorf("%w: restore registers of %d: %w", errInject, tid, err)
		}
		if err := ptraceDetachSig(tid, pending); err != nil {
			return fmt.Errorf("%w: detach %d: %w", errInject, tid, err)
		}
		return nil
	}
	r := saved
	r.Rip, r.Rax, r.Orig_rax = insn, nr, ^uint64(0)
	regs := []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9}
	for i, a := range args {
		*regs[i] = a
	}
	if err := unix.PtraceSetRegs(tid, &r); err != nil {
		return 0, errors.Join(fmt.Errorf("%w: set registers: %w", errInject, err), restore())
	}
	for stops := 0; stops < 2; { // syscall entry, then exit
		if err := unix.PtraceSyscall(tid, 0); err != nil {
			return 0, errors.Join(fmt.Errorf("%w: ptrace syscall: %w", errInject, err), restore())
		}
		ws, err := waitStop(tid)
		if err != nil {
			return 0, err
		}
		if sig := ws.StopSignal(); sig&0x7f == unix.SIGTRAP {
			stops++
		} else {
			pending = int(sig) // deliver it after we are gone
		}
	}
	if err := unix.PtraceGetRegs(tid, &r); err != nil {
		return 0, errors.Join(fmt.Errorf("%w: get result: %w", errInject, err), restore())
	}
	return int64(r.Rax), restore()
}

// restartRegs returns the registers to resume a thread with that was
// stopped inside a syscall. Resumed from our syscall-exit stop, the kernel
// no longer restarts the interrupted call, so do what it would have done
// (arch/x86/kernel/signal.c): rewind rip over the 2-byte syscall
// instruction and reload rax (QEMU's main thread in ppoll shows -514).
func restartRegs(r unix.PtraceRegs) unix.PtraceRegs {
	if int64(r.Orig_rax) < 0 {
		return r
	}
	switch -int64(r.Rax) {
	case errRestartSys, errRestartNoIntr, errRestartNoHand:
		r.Rax, r.Rip = r.Orig_rax, r.Rip-2
	case errRestartRestartBlock:
		r.Rax, r.Rip = unix.SYS_RESTART_SYSCALL, r.Rip-2
	}
	return r
}

func waitStop(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("%w: wait %d: %w", errInject, tid, err)
		}
		if !ws.Stopped() {
			return ws, fmt.Errorf("%w: thread %d exited (status %#x)", errInject, tid, uint32(ws))
		}
		return ws, nil
	}
}

func ptraceDetachSig(tid, sig int) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// findSyscallInsn returns the address of a 0f 05 in pid's [vdso], or
// failing that in any executable mapping.
func findSyscallInsn(pid int) (uint64, error) {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errInject, err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errInject, err)
	}
	defer mem.Close()
	for pass := 0; pass < 2; pass++ {
		sc := bufio.NewScanner(bytes.NewReader(maps))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 2 || len(f[1]) < 3 || f[1][2] != 'x' || (pass == 0 && !strings.HasSuffix(sc.Text(), "[vdso]")) {
				continue
			}
			lo, hi, ok := parseRange(f[0])
			if !ok {
				continue
			}
			buf := make([]byte, min(hi-lo, 4<<20))
			n, _ := mem.ReadAt(buf, int64(lo))
			if i := bytes.Index(buf[:n], []byte{0x0f, 0x05}); i >= 0 {
				return lo + uint64(i), nil
			}
		}
	}
	return 0, fmt.Errorf("%w: no syscall instruction in pid %d", errInject, pid)
}

// parseRange parses "start-end" of a /proc/PID/maps line.
func parseRange(s string) (lo, hi uint64, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	lo, err1 := strconv.ParseUint(a, 16, 64)
	hi, err2 := strconv.ParseUint(b, 16, 64)
	return lo, hi, err1 == nil && err2 == nil && hi > lo
}
