// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
)

// lockedBuffer is a goroutine-safe output sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddrs returns n distinct loopback addresses that were free: all are
// held open together before being released, so they cannot repeat.
func freeAddrs(t *testing.T, n int) []string {
	var addrs []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// startAgent runs `resilire args...` until the returned stop is called.
func startAgent(t *testing.T, args ...string) (stop func() int, stderr *lockedBuffer) {
	ctx, cancel := context.WithCancel(context.Background())
	stderr = &lockedBuffer{}
	done := make(chan int, 1)
	go func() { done <- Run(ctx, &lockedBuffer{}, stderr, append([]string{"resilire"}, args...)) }()
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				buf := make([]byte, 1<<20)
				t.Errorf("resilire %v did not stop; goroutines:\n%s", args, buf[:runtime.Stack(buf, true)])
				code = -1
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop, stderr
}

func statusOf(t *testing.T, addr string) string {
	var out, errb bytes.Buffer
	if Run(context.Background(), &out, &errb, []string{"resilire", "status", "--addr", addr}) != 0 {
		return "error: " + errb.String()
	}
	return out.String()
}

// waitStatus polls the agent over HTTP directly: running a second urfave
// app while another one parses its flags races inside urfave (its shared
// help flag), so the CLI status command is only used once agents run.
func waitStatus(t *testing.T, addr, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, err := checkpointer.FetchStatus(context.Background(), addr)
		if err == nil && st.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s never showed %q; last %+v %v", addr, want, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// protect and standby with the simulated domain over loopback: the
// primary becomes protected, status reports both, and when the primary
// stops the standby (unsafe, no fence) takes over.
func TestProtectStandbyStatus(t *testing.T) {
	a := freeAddrs(t, 3)
	repl, mb, mp := a[0], a[1], a[2]
	common := []string{"--vm", "vm1", "--domain", "sim", "--unsafe-allow-sim", "--sim-memory-mib", "4", "--sim-hot-pages", "256", "--heartbeat-timeout", "400ms"}
	stopB, errB := startAgent(t, append([]string{"--log-level", "debug", "standby", "--listen", repl, "--metrics-addr", mb, "--unsafe-no-fence"}, common...)...)
	waitStatus(t, mb, checkpointer.StateWaiting)
	stopP, errP := startAgent(t, append([]string{"protect", "--backup", repl, "--metrics-addr", mp, "--interval", "20ms"}, common...)...)
	waitStatus(t, mp, checkpointer.StateProtected)
	waitStatus(t, mb, checkpointer.StateStandby)
	if st := statusOf(t, mp); !strings.Contains(st, "role primary  state protected") {
		t.Errorf("status command printed %q", st)
	}
	if !strings.Contains(errP.String(), "WITHOUT TLS") || !strings.Contains(errB.String(), "WITHOUT TLS") {
		t.Errorf("no plaintext warning:\n%s\n%s", errP.String(), errB.String())
	}
	for _, m := range []struct{ addr, series string }{
		{mp, `resilire_pause_seconds_count{role="primary",vm="vm1"}`},
		{mp, `resilire_ack_latency_seconds_count{role="primary",vm="vm1"}`},
		{mp, `resilire_state{role="primary",state="protected",vm="vm1"} 1`},
		{mb, `resilire_checkpoints_total{result="applied",role="backup",vm="vm1"}`},
		{mb, `resilire_wire_bytes_total{role="backup",vm="vm1"}`},
	} {
		body := httpGet(t, "http://"+m.addr+"/metrics")
		if !strings.Contains(body, m.series) {
			t.Errorf("%s/metrics lacks %s", m.addr, m.series)
		}
	}
	if code := stopP(); code != 0 {
		t.Fatalf("protect exited %d: %s", code, errP.String())
	}
	waitStatus(t, mb, checkpointer.StateActive)
	if !strings.Contains(errB.String(), "going live WITHOUT fencing") {
		t.Errorf("standby log lacks the unsafe warning:\n%s", errB.String())
	}
	stopB()
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAgentHelpIsStable(t *testing.T) {
	for _, cmd := range []string{"protect", "standby", "status"} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), &out, &errb, []string{"resilire", cmd, "--help"}); code != 0 {
			t.Fatalf("%s --help exited %d: %s", cmd, code, errb.String())
		}
		if !strings.Contains(out.String(), "resilire "+cmd) {
			t.Fatalf("%s --help: %q", cmd, out.String())
		}
	}
}

func TestStandbyRejectsBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"resilire", "protect", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--backup", "127.0.0.1:1", "--on-backup-loss", "maybe", "--metrics-addr", ""}
	if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), "block or continue") {
		t.Fatalf("bad policy accepted: %q", errb.String())
	}
}

func TestInputReplayNeedsDataplane(t *testing.T) {
	for _, args := range [][]string{
		{"resilire", "protect", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--backup", "127.0.0.1:1", "--input-replay", "--metrics-addr", ""},
		{"resilire", "standby", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--listen", "127.0.0.1:0", "--input-replay", "--metrics-addr", ""},
	} {
		var out, errb bytes.Buffer
		if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), "--input-replay needs --dataplane") {
			t.Fatalf("%s --input-replay without --dataplane: %q", args[1], errb.String())
		}
	}
}

func TestAgentsRejectLongVMName(t *testing.T) {
	for _, cmd := range []string{"protect", "standby"} {
		var out, errb bytes.Buffer
		args := []string{"resilire", cmd, "--vm", strings.Repeat("v", 256), "--domain", "xen", "--backup", "127.0.0.1:1"}
		if cmd == "standby" {
			args = args[:len(args)-2]
		}
		if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), "--vm: 256 bytes, at most 255") {
			t.Errorf("%s with a 256-byte --vm: %q", cmd, errb.String())
		}
	}
}

func TestAgentsRejectBadTimings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"protect", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--backup", "127.0.0.1:1", "--interval=-5s"}, "--interval -5s: must be positive"},
		{[]string{"protect", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--backup", "127.0.0.1:1", "--ack-timeout", "0s"}, "--ack-timeout 0s: must be positive"},
		{[]string{"standby", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--heartbeat-timeout", "50ms"}, "must be longer than --heartbeat-interval"},
		{[]string{"standby", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--fence-timeout=-1s"}, "--fence-timeout -1s: must be positive"},
		{[]string{"protect", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--backup", "127.0.0.1:1", "--max-skipped-epochs=-1"}, "--max-skipped-epochs -1: must be 0 or more"},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"resilire"}, append(tc.args, "--metrics-addr", "")...)
		if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q, want %q", tc.args, errb.String(), tc.want)
		}
	}
}

func TestAgentsRejectBadCacheSize(t *testing.T) {
	for _, v := range []string{"-1", "2000000"} {
		var out, errb bytes.Buffer
		args := []string{"resilire", "protect", "--vm", "x", "--domain", "sim", "--unsafe-allow-sim", "--backup", "127.0.0.1:1",
			"--fgbi-cache-mib", v, "--metrics-addr", ""}
		if Run(context.Background(), &out, &errb, args) == 0 || !strings.Contains(errb.String(), "--fgbi-cache-mib "+v+": want 0 (no cache)") {
			t.Errorf("--fgbi-cache-mib %s: %q", v, errb.String())
		}
	}
}
