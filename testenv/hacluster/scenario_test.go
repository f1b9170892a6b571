// SPDX-License-Identifier: Apache-2.0

package hacluster

import (
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/testenv/kvload"
)

func TestKillResultVerdicts(t *testing.T) {
	ok := &KillResult{Load: &kvload.Result{}, AckedAfterKill: 3, Interval: 50 * time.Millisecond,
		Primary: Status{Stats: &checkpointer.EpochSummary{Committed: 7, PauseP50: 9 * time.Millisecond}}}
	if !ok.Safe() || !ok.Survived() {
		t.Fatal("clean run not safe")
	}
	var b strings.Builder
	ok.Print(&b)
	for _, want := range []string{"epochs committed before the kill: 7 (interval 50ms)", "acknowledged writes lost:        0", "verdict:                         SAFE"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
	cases := map[string]*KillResult{
		"lost":         {Load: &kvload.Result{}, AckedAfterKill: 1, Lost: []string{"k1"}},
		"rolled back":  {Load: &kvload.Result{Inconsistent: 1}, AckedAfterKill: 1},
		"reconnected":  {Load: &kvload.Result{Reconnects: 1}, AckedAfterKill: 1},
		"never served": {Load: &kvload.Result{}},
	}
	for name, r := range cases {
		if r.Survived() {
			t.Errorf("%s: counted as survived", name)
		}
	}
	if cases["reconnected"].Safe() != true || cases["lost"].Safe() || cases["rolled back"].Safe() {
		t.Error("Safe must fail exactly on lost writes and rolled-back replies")
	}
	var v strings.Builder
	cases["lost"].Print(&v)
	if !strings.Contains(v.String(), "VIOLATION") {
		t.Errorf("violation not reported:\n%s", v.String())
	}
}
