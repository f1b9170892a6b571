// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// A report as the guest writes it (-test.v streams a test's log before
// its result line): CRLF from the serial line, a package
// that passed with a skip, one that failed with a failed subtest, one the
// VM never finished.
var sampleReport = "init: kernel 6.1.0-56-cloud-amd64, 9 modules loaded\r\n" +
	BeginLine("dataplane") + "\r\n" +
	"=== RUN   TestA\r\n--- PASS: TestA (0.01s)\r\n" +
	"=== RUN   TestTCX\r\n    attach_test.go:29: kernel lacks tcx links (needs Linux 6.6)\r\n" +
	"--- SKIP: TestTCX (0.00s)\r\n" +
	"PASS\r\n" +
	"=== KERNELVM END dataplane exit=0 dur=1.5s\r\n" +
	BeginLine("netbuf") + "\r\n" +
	"=== RUN   TestHold\r\n=== RUN   TestHold/ring\r\n    hold_test.go:5: kernel lacks ring path\r\n" +
	"=== RUN   TestHold/udp\r\n    hold_test.go:9: got 555 of 2000\r\n" +
	"    --- SKIP: TestHold/ring (0.00s)\r\n    --- FAIL: TestHold/udp (2.00s)\r\n--- FAIL: TestHold (2.00s)\r\n" +
	"FAIL\r\n" +
	"=== KERNELVM END netbuf exit=1 dur=3s\r\n" +
	BeginLine("cli") + "\r\n" +
	"=== RUN   TestX\r\n"

func parse(s string) *Report {
	p := &parser{rep: &Report{}}
	for _, l := range strings.Split(s, "\n") {
		p.line(l)
	}
	return p.rep
}

func TestParseReport(t *testing.T) {
	rep := parse(sampleReport)
	if rep.Done || rep.OK() {
		t.Errorf("unfinished report: Done=%v OK=%v, want false, false", rep.Done, rep.OK())
	}
	if len(rep.Results) != 3 {
		t.Fatalf("got %d results, want 3", len(rep.Results))
	}
	dp, nb, cli := rep.Results[0], rep.Results[1], rep.Results[2]
	if !dp.OK() || dp.Dur != "1.5s" || !slices.Equal(dp.Passed, []string{"TestA"}) {
		t.Errorf("dataplane = %+v, want ok, 1.5s, TestA passed", dp)
	}
	if want := (Skip{"TestTCX", "attach_test.go:29: kernel lacks tcx links (needs Linux 6.6)"}); len(dp.Skipped) != 1 || dp.Skipped[0] != want {
		t.Errorf("dataplane skips = %+v, want %+v", dp.Skipped, want)
	}
	if nb.OK() || nb.Exit != 1 || !slices.Equal(nb.Failed, []string{"TestHold"}) || !slices.Equal(nb.FailedSub, []string{"TestHold/udp"}) {
		t.Errorf("netbuf = %+v, want exit 1, TestHold and TestHold/udp failed", nb)
	}
	if want := (Skip{"TestHold/ring", "hold_test.go:5: kernel lacks ring path"}); len(nb.SkippedSub) != 1 || nb.SkippedSub[0] != want {
		t.Errorf("netbuf skipped subtests = %+v, want %+v", nb.SkippedSub, want)
	}
	if cli.OK() || !cli.Ran || cli.Ended {
		t.Errorf("cli = %+v, want ran, not ended, not ok", cli)
	}
	var b strings.Builder
	rep.Summary(&b)
	for _, want := range []string{"FAIL TestHold\n", "SKIP TestTCX: attach_test.go:29", "FAIL (no end", "did not finish"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

func TestParseDoneAndInitFailure(t *testing.T) {
	rep := parse(BeginLine("netbuf") + "\n--- PASS: TestA (0.00s)\n" + EndLine("netbuf", 0, "1s") + "\n" + DoneLine() + "\n")
	if !rep.OK() {
		t.Errorf("finished passing report not OK: %+v", rep)
	}
	rep = parse(FailLine(errors.New("load module bridge.ko: exec format error")) + "\n")
	if rep.OK() || rep.InitError != "load module bridge.ko: exec format error" {
		t.Errorf("init failure = %+v, want InitError and not OK", rep)
	}
}
