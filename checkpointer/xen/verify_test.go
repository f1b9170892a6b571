// SPDX-License-Identifier: Apache-2.0

package xen

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/resilire/resilire/testenv"
)

// Xen's own stream verifier, from Debian's xen-utils-4.17, and the Python
// modules it imports (shipped by the same package).
const defaultVerifier = "/usr/lib/xen-4.17/bin/verify-stream-v2"

// verifier returns the verify-stream-v2 path. It skips when the verifier is
// missing, unless RESILIRE_TEST_PRIVILEGED=1 (CI), where a missing verifier
// is a failure: CI installs xen-utils-4.17.
func verifier(t *testing.T) string {
	t.Helper()
	path := os.Getenv("RESILIRE_XEN_VERIFIER")
	if path == "" {
		path = defaultVerifier
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv(testenv.PrivilegedEnv) == "1" {
			t.Fatalf("%s missing (apt-get install xen-utils-4.17): %v", path, err)
		}
		t.Skipf("%s missing (apt-get install xen-utils-4.17)", path)
	}
	return path
}

// verify runs the verifier on stream in format ("libxc", "libxl" or "xl")
// and returns its exit status and output.
func verify(t *testing.T, path, format string, stream []byte) (int, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stream")
	if err := os.WriteFile(f, stream, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-v", "-f", format, "-i", f)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(filepath.Dir(path), "..", "lib", "python"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("run %s: %v", path, err)
	}
	return 0, string(out)
}

func TestVerifierAcceptsStreams(t *testing.T) {
	path := verifier(t)
	mem, st := testReplica(t)
	var libxc, libxl, xl bytes.Buffer
	if err := WriteLibxcStream(&libxc, mem, st); err != nil {
		t.Fatal(err)
	}
	if err := WriteLibxlStream(&libxl, mem, st); err != nil {
		t.Fatal(err)
	}
	if err := WriteXLImage(&xl, mem, st, []byte(`{"c_info":{"type":"pvh","name":"guest"}}`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		format string
		b      []byte
	}{{"libxc", libxc.Bytes()}, {"libxl", libxl.Bytes()}, {"xl", xl.Bytes()}} {
		code, out := verify(t, path, tc.format, tc.b)
		if code != 0 {
			t.Fatalf("verify-stream-v2 -f %s rejected our stream (exit %d):\n%s", tc.format, code, out)
		}
		t.Logf("-f %s:\n%s", tc.format, out)
	}
}

// TestVerifierRejectsBrokenStreams breaks a valid stream in ways the spec
// forbids and checks that Xen's verifier notices each one, which shows that
// its acceptance above means something.
func TestVerifierRejectsBrokenStreams(t *testing.T) {
	path := verifier(t)
	mem, st := testReplica(t)
	var good bytes.Buffer
	if err := WriteLibxcStream(&good, mem, st); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	const firstRec = 40 // image header 24 + domain header 16
	// Offsets inside the last records: END is the last 8 bytes; the HVM
	// context record (1234 bytes, padded to 1240) precedes HVM_PARAMS.
	paramsRec := len(g) - 8 - (8 + 8 + 16*len(st.Params))
	ctxPad := paramsRec - 1 // last padding byte of HVM_CONTEXT
	for _, tc := range []struct {
		name   string
		want   string // the verifier's diagnosis
		break_ func([]byte) []byte
	}{
		{"bad-marker", "Bad image marker", func(b []byte) []byte { b[0] = 0xfe; return b }},
		{"version-1", "Unknown image version", func(b []byte) []byte { binary.BigEndian.PutUint32(b[12:], 1); return b }},
		{"page-shift", "Page shift expected to be 12", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[28:], 13); return b }},
		{"page-count", "RecordError: Expected", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[firstRec+8:], 0x9e) // one pfn fewer than the data
			return b
		}},
		{"pfn-reserved-bits", "Reserved bits set in pfn", func(b []byte) []byte { b[firstRec+16+6] = 0x10; return b }},
		{"nonzero-padding", "Padding containing non0 bytes", func(b []byte) []byte { b[ctxPad] = 1; return b }},
		{"params-count", "Length should be", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[paramsRec+8:], 3); return b }},
		{"unknown-record", "Unrecognised record type", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[len(b)-8:], 0x7f); return b }},
		{"truncated", "Stream truncated", func(b []byte) []byte { return b[:len(b)-8] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.break_(bytes.Clone(g))
			code, out := verify(t, path, "libxc", b)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("verifier exit %d (want 1, %q) for a broken stream:\n%s", code, tc.want, out)
			}
		})
	}
}
