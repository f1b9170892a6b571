// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Result is what one package's test binary did in the VM.
type Result struct {
	Name           string
	Passed, Failed []string // top-level tests
	Skipped        []Skip   // top-level tests, with the reason
	FailedSub      []string // failed subtests (Parent/sub)
	SkippedSub     []Skip   // skipped subtests, with the reason
	Ran            bool     // the binary started
	Ended          bool     // its end was reported
	Exit           int
	Dur            string
	NoTests        bool              // the package has no test files
	curTest        string            // the test the log lines belong to
	lastLog        map[string]string // test -> its last log line: a skip's reason
}

// Skip is a skipped test and the message it skipped with.
type Skip struct{ Test, Reason string }

// OK reports whether the package passed: it ran to the end and exited 0,
// or has no tests.
func (r *Result) OK() bool { return r.NoTests || (r.Ended && r.Exit == 0) }

// Report is the parsed report of a VM run.
type Report struct {
	Results   []*Result
	Done      bool   // the guest ran every job
	InitError string // the guest's setup failed
}

// OK reports whether every package passed and the guest finished.
func (r *Report) OK() bool {
	if !r.Done || r.InitError != "" {
		return false
	}
	for _, res := range r.Results {
		if !res.OK() {
			return false
		}
	}
	return true
}

var (
	topResult  = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): (\S+) \(`)
	subResult  = regexp.MustCompile(`^\s+--- (FAIL|SKIP): (\S+) \(`)
	testHeader = regexp.MustCompile(`^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	endFields  = regexp.MustCompile(`^(\S+) exit=(-?\d+) dur=(\S+)$`)
)

// parser turns report lines into a Report.
type parser struct {
	rep *Report
	cur *Result
}

func (p *parser) result(name string) *Result {
	for _, r := range p.rep.Results {
		if r.Name == name {
			return r
		}
	}
	r := &Result{Name: name}
	p.rep.Results = append(p.rep.Results, r)
	return r
}

func (p *parser) line(l string) {
	l = strings.TrimRight(l, "\r")
	switch {
	case strings.HasPrefix(l, beginMarker):
		p.cur = p.result(strings.TrimPrefix(l, beginMarker))
		p.cur.Ran = true
		return
	case strings.HasPrefix(l, endMarker):
		if m := endFields.FindStringSubmatch(strings.TrimPrefix(l, endMarker)); m != nil {
			r := p.result(m[1])
			r.Ended, r.Dur = true, m[3]
			r.Exit, _ = strconv.Atoi(m[2])
		}
		p.cur = nil
		return
	case l == doneMarker:
		p.rep.Done = true
		return
	case strings.HasPrefix(l, failMarker):
		p.rep.InitError = strings.TrimPrefix(l, failMarker)
		return
	}
	r := p.cur
	if r == nil {
		return
	}
	if m := topResult.FindStringSubmatch(l); m != nil {
		switch m[1] {
		case "PASS":
			r.Passed = append(r.Passed, m[2])
		case "FAIL":
			r.Failed = append(r.Failed, m[2])
		case "SKIP":
			r.Skipped = append(r.Skipped, Skip{Test: m[2], Reason: r.lastLog[m[2]]})
		}
		return
	}
	if m := subResult.FindStringSubmatch(l); m != nil {
		if m[1] == "FAIL" {
			r.FailedSub = append(r.FailedSub, m[2])
		} else {
			r.SkippedSub = append(r.SkippedSub, Skip{Test: m[2], Reason: r.lastLog[m[2]]})
		}
		return
	}
	// With -test.v a test's log is streamed under a "=== RUN/CONT/NAME
	// test" header, before its result line (subtests' results come after
	// their parent's), so a skip's reason is its test's last log line.
	if m := testHeader.FindStringSubmatch(l); m != nil {
		r.curTest = m[1]
		return
	}
	if strings.HasPrefix(l, "    ") && r.curTest != "" {
		if r.lastLog == nil {
			r.lastLog = make(map[string]string)
		}
		r.lastLog[r.curTest] = strings.TrimSpace(l)
	}
}

// Summary writes one line per package and the failed and skipped tests.
func (r *Report) Summary(w io.Writer) {
	for _, res := range r.Results {
		status := "PASS"
		switch {
		case res.NoTests:
			status = "NO TESTS"
		case !res.Ran:
			status = "NOT RUN"
		case !res.Ended:
			status = "FAIL (no end: VM died or timed out)"
		case res.Exit != 0:
			status = fmt.Sprintf("FAIL (exit %d)", res.Exit)
		}
		fmt.Fprintf(w, "%-10s %-8s pass %3d  fail %3d  skip %3d  (subtests: fail %d, skip %d)  %s\n", res.Name, res.Dur,
			len(res.Passed), len(res.Failed), len(res.Skipped), len(res.FailedSub), len(res.SkippedSub), status)
		for _, f := range res.Failed {
			fmt.Fprintf(w, "    FAIL %s\n", f)
		}
		for _, f := range res.FailedSub {
			fmt.Fprintf(w, "    FAIL %s (subtest)\n", f)
		}
		for _, s := range res.Skipped {
			fmt.Fprintf(w, "    SKIP %s: %s\n", s.Test, s.Reason)
		}
		for _, s := range res.SkippedSub {
			fmt.Fprintf(w, "    SKIP %s (subtest): %s\n", s.Test, s.Reason)
		}
	}
	if r.InitError != "" {
		fmt.Fprintf(w, "guest init failed: %s\n", r.InitError)
	}
	if !r.Done {
		fmt.Fprintln(w, "the guest did not finish every job")
	}
}
