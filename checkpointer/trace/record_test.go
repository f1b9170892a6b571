// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/testenv"
)

// The test binary doubles as the traced process: with helperEnv set it runs
// helperMain, which mmaps a buffer of helperPages pages, prints its address
// and then applies one scripted step per line read from stdin, answering
// "ok ADDR" (ADDR: the extra region, 0 if none) once the step is done.
const (
	helperEnv   = "RTR_TRACE_HELPER"
	helperPages = 64
	extraPages  = 8
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperMain()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// zeroStep marks an expected page of zeros.
const zeroStep = -1

// pageContent is the content of a page written at step (8-byte words that
// differ in every word, so a torn or misplaced page cannot match).
func pageContent(step, page, region int) []byte {
	b := make([]byte, PageSize)
	if step == zeroStep {
		return b
	}
	for j := 0; j < PageSize; j += 8 {
		binary.LittleEndian.PutUint64(b[j:], uint64(step)<<48|uint64(region)<<40|uint64(page)<<16|uint64(j))
	}
	return b
}

// stepPages is the set of buffer pages step k writes (k = 1, 2).
func stepPages(k int) []int {
	return []int{k, (k*11 + 20) % helperPages, helperPages - k}
}

func helperMain() {
	buf, err := mmapAnon(helperPages)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	for p := range helperPages {
		copy(buf[p*PageSize:], pageContent(0, p, 0))
	}
	// A shared file mapping of 3 pages over a 1-page file: pages 1 and 2
	// lie past the end of the file and cannot be read.
	fm, err := mmapFile(1, 3)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	fm[0] = 1
	fmt.Printf("addr %x %x\n", bufAddr(buf), bufAddr(fm))
	var extra []byte
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var k int
		_, _ = fmt.Sscanf(sc.Text(), "step %d", &k)
		switch k {
		case 1, 2:
			for _, p := range stepPages(k) {
				copy(buf[p*PageSize:], pageContent(k, p, 0))
			}
		case 3: // rewrite step 2's pages with the same bytes: no change
			for _, p := range stepPages(2) {
				copy(buf[p*PageSize:], pageContent(2, p, 0))
			}
		case 4: // a new mapping appears
			if extra, err = mmapAnon(extraPages); err != nil {
				fmt.Println("error", err)
				return
			}
			for p := range extraPages {
				copy(extra[p*PageSize:], pageContent(4, p, 1))
			}
		case 5:
			copy(extra[2*PageSize:], pageContent(5, 2, 1))
			copy(buf[7*PageSize:], pageContent(5, 7, 0))
		case 6: // the mapping disappears
			if err := unmapWritable(extra); err != nil {
				fmt.Println("error", err)
				return
			}
			copy(buf[0:], pageContent(6, 0, 0))
		case 7: // a page is dropped: it reads as zeros from now on
			dropPage(buf[10*PageSize : 11*PageSize])
		}
		addr := uint64(0)
		if extra != nil {
			addr = bufAddr(extra)
		}
		fmt.Printf("ok %x\n", addr)
	}
}

// want is one expected page: region 0 is the buffer, 1 the extra mapping.
type want struct{ region, page, step int }

// expected lists, per epoch, the helper pages that must be recorded.
func expected() [][]want {
	var e [][]want
	var all []want
	for p := range helperPages {
		all = append(all, want{0, p, 0})
	}
	e = append(e, all)
	for k := 1; k <= 2; k++ {
		var w []want
		for _, p := range stepPages(k) {
			w = append(w, want{0, p, k})
		}
		e = append(e, w)
	}
	e = append(e, nil) // step 3 changed nothing
	var ex []want
	for p := range extraPages {
		ex = append(ex, want{1, p, 4})
	}
	e = append(e, ex)
	e = append(e, []want{{1, 2, 5}, {0, 7, 5}})
	e = append(e, []want{{0, 0, 6}})
	e = append(e, []want{{0, 10, zeroStep}})
	return e
}

// startHelper runs the helper and returns its pid, stdin, stdout and
// buffer address; the process is killed and reaped at cleanup.
func startHelper(t *testing.T) (int, io.Writer, *bufio.Reader, uint64, uint64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Kill)
		_ = cmd.Wait()
	})
	out := bufio.NewReader(outp)
	var addr, faddr uint64
	line, _ := out.ReadString('\n')
	if _, err := fmt.Sscanf(line, "addr %x %x", &addr, &faddr); err != nil {
		t.Fatalf("helper said %q: %v", line, err)
	}
	return cmd.Process.Pid, in, out, addr, faddr
}

func procState(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	st, err := statState(string(b))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitRunning fails unless pid leaves the stopped state within a second.
func waitRunning(t *testing.T, pid int) {
	t.Helper()
	for range 100 {
		if procState(t, pid) != 'T' {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d left stopped", pid)
}

func TestRecordSIGSTOP(t *testing.T) { testRecord(t, FreezeSIGSTOP) }

func TestRecordCgroup(t *testing.T) {
	testenv.RequirePrivileged(t)
	testRecord(t, FreezeCgroup)
}

// testRecord drives the helper one step per epoch and checks that each
// epoch holds exactly the helper pages that step changed, with their bytes.
func testRecord(t *testing.T, mode Freeze) {
	pid, in, out, addr, faddr := startHelper(t)
	cgBefore, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	exp := expected()
	var extraAddr uint64
	dir := t.TempDir()
	meta, err := Record(context.Background(), Options{PID: pid, Dir: dir, Interval: 30 * time.Millisecond,
		Epochs: len(exp), Freeze: mode, OnEpoch: func(e EpochInfo) error {
			if e.Seq+1 >= len(exp) {
				return nil
			}
			fmt.Fprintf(in, "step %d\n", e.Seq+1)
			line, err := out.ReadString('\n')
			var a uint64
			if _, serr := fmt.Sscanf(line, "ok %x", &a); err != nil || serr != nil {
				return fmt.Errorf("helper said %q: %v %v", line, err, serr)
			}
			if a != 0 {
				extraAddr = a
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, pid)
	if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); !bytes.Equal(cg, cgBefore) {
		t.Errorf("process left in cgroups %q, was in %q", cg, cgBefore)
	}
	if meta.Epochs != len(exp) || meta.Pages == 0 {
		t.Fatalf("meta: %d epochs, %d pages", meta.Epochs, meta.Pages)
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pfnOf := func(region, page int) uint64 {
		a := addr + uint64(page)*PageSize
		if region == 1 {
			a = extraAddr + uint64(page)*PageSize
		}
		return pfnOfAddr(t, r.Meta(), a)
	}
	for seq, ws := range exp {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("epoch %d: %v", seq, err)
		}
		if seq == 0 { // the file mapping: page 0 read, the pages past EOF skipped
			for p, want := range []bool{true, false, false} {
				_, ok := slices.BinarySearch(e.PFNs, pfnOfAddr(t, r.Meta(), faddr+uint64(p)*PageSize))
				if ok != want {
					t.Errorf("file mapping page %d recorded: %v, want %v", p, ok, want)
				}
			}
		}
		ours := map[uint64]want{}
		for p := range helperPages {
			ours[pfnOf(0, p)] = want{0, p, -1}
		}
		if extraAddr != 0 {
			for p := range extraPages {
				ours[pfnOf(1, p)] = want{1, p, -1}
			}
		}
		var got, wantPFNs []uint64
		for _, w := range ws {
			wantPFNs = append(wantPFNs, pfnOf(w.region, w.page))
		}
		slices.Sort(wantPFNs)
		for i, p := range e.PFNs {
			w, ok := ours[p]
			if !ok {
				continue // the Go runtime's own pages
			}
			got = append(got, p)
			j := slices.IndexFunc(ws, func(x want) bool { return x.region == w.region && x.page == w.page })
			if j >= 0 && !bytes.Equal(e.Data[i*PageSize:(i+1)*PageSize], pageContent(ws[j].step, w.page, w.region)) {
				t.Errorf("epoch %d: region %d page %d content differs", seq, w.region, w.page)
			}
		}
		if !slices.Equal(got, wantPFNs) {
			t.Errorf("epoch %d: helper pfns %v, want %v", seq, got, wantPFNs)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last epoch: %v", err)
	}
}

// pfnOfAddr finds the PFN of address a in the trace's slots.
func pfnOfAddr(t *testing.T, meta Meta, a uint64) uint64 {
	t.Helper()
	for _, m := range meta.Mappings {
		if a >= m.Start && a < m.End {
			return m.FirstPFN + (a-m.Start)/PageSize
		}
	}
	t.Fatalf("address %x in no mapping", a)
	return 0
}

func TestRecordAbortResumes(t *testing.T) {
	pid, _, _, _, _ := startHelper(t)
	dir := t.TempDir()
	boom := errors.New("boom")
	_, err := Record(context.Background(), Options{PID: pid, Dir: dir, Interval: 25 * time.Millisecond, Epochs: 10,
		OnEpoch: func(e EpochInfo) error {
			if e.Seq == 1 {
				return boom
			}
			return nil
		}})
	if !errors.Is(err, boom) {
		t.Fatalf("record: %v, want boom", err)
	}
	waitRunning(t, pid)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("aborted recording left %v", ents)
	}
}

// TestRecordCommand starts a command, records a bounded number of epochs
// and checks that Record ends and reaps it.
func TestRecordCommand(t *testing.T) {
	dir := t.TempDir()
	meta, err := Record(context.Background(), Options{Cmd: []string{"sleep", "30"}, Dir: dir,
		Interval: 25 * time.Millisecond, Epochs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Epochs != 3 || meta.Name != "sleep" || meta.Pages == 0 || len(meta.Mappings) == 0 {
		t.Fatalf("meta %+v", meta)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", meta.PID)); err == nil {
		st := procState(t, meta.PID)
		t.Fatalf("process %d still there (state %c)", meta.PID, st)
	}
	_, eps, err := readAll(dir)
	if err != nil || len(eps) != 3 {
		t.Fatalf("read back: %v, %d epochs", err, len(eps))
	}
	// The process may still be loading at epoch 0, so later epochs can add
	// slots; each slot's pages must all be in the epoch it appeared in.
	for _, m := range meta.Mappings {
		for p := m.FirstPFN; p < m.FirstPFN+(m.End-m.Start)/PageSize; p++ {
			if _, ok := slices.BinarySearch(eps[m.FirstEpoch].PFNs, p); !ok {
				t.Fatalf("pfn %d of %s (new in epoch %d) missing from that epoch", p, m.Path, m.FirstEpoch)
			}
		}
	}
	if !strings.Contains(fmt.Sprint(meta.Command), "sleep") {
		t.Fatalf("command %v", meta.Command)
	}
}

// TestRecordBounds checks that a duration bound and a cancelled context
// both end a recording early with a valid trace.
func TestRecordBounds(t *testing.T) {
	t0 := time.Now()
	meta, err := Record(context.Background(), Options{Cmd: []string{"sleep", "30"}, Dir: t.TempDir(),
		Interval: 25 * time.Millisecond, Duration: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Epochs < 2 || time.Since(t0) > 10*time.Second {
		t.Fatalf("duration bound: %d epochs in %v", meta.Epochs, time.Since(t0))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	dir := t.TempDir()
	meta, err = Record(ctx, Options{Cmd: []string{"sleep", "30"}, Dir: dir, Interval: 25 * time.Millisecond, Epochs: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if _, eps, err := readAll(dir); err != nil || meta.Epochs >= 10000 || len(eps) != meta.Epochs {
		t.Fatalf("cancelled: %d epochs, read %d: %v", meta.Epochs, len(eps), err)
	}
}
