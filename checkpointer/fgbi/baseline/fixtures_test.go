// SPDX-License-Identifier: Apache-2.0

package baseline

import (
	"strings"
	"testing"

	"github.com/resilire/resilire/testenv"

	"github.com/resilire/resilire/checkpointer/trace"
)

type traceSource struct{ r *trace.Reader }

func (s traceSource) Next() ([]uint64, []byte, error) {
	e, err := s.r.Next()
	if err != nil {
		return nil, nil, err
	}
	return e.PFNs, e.Data, nil
}

// TestFixtures runs every codec over the committed real-process traces:
// each must reproduce the traced memory exactly, and on redis and pgbench
// full FGBI must send at most a quarter of Remus's raw pages (wire bytes
// are deterministic; speed is the benchmark's business, not a test's).
func TestFixtures(t *testing.T) {
	for _, name := range testenv.TraceFixtures {
		t.Run(name, func(t *testing.T) {
			dir, err := testenv.TraceFixtureDir(name)
			if err != nil {
				t.Fatal(err)
			}
			r, err := trace.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			codecs, err := StandardCodecs(r.Meta().Pages, 64, 2)
			if err != nil {
				t.Fatal(err)
			}
			if testing.Short() { // raw and the FGBI rows only
				codecs = append(codecs[:1], codecs[5:]...)
			}
			rep, err := Run(name, traceSource{r}, r.Meta().Pages, codecs)
			if err != nil {
				t.Fatal(err)
			}
			raw := rep.Results[0].Wire
			for _, res := range rep.Results {
				if res.Err != nil || !res.Verified {
					t.Errorf("%s: err %v, verified %v", res.Name, res.Err, res.Verified)
				}
				if strings.Contains(res.Name, "+ compression") && name != "ep" && 4*res.Wire > raw {
					t.Errorf("%s: %d wire bytes, more than a quarter of raw %d", res.Name, res.Wire, raw)
				}
			}
			t.Logf("%s: raw %d B, fgbi %d B", name, raw, rep.Results[len(rep.Results)-1].Wire)
		})
	}
}
