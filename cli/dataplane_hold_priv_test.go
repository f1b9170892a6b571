// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/resilire/resilire/netbuf"
	"github.com/resilire/resilire/testenv"
)

// TestHoldCommitDump drives a manual holder through the CLI on a real
// bridge port: a frame the guest sends stays held (and shows in dump)
// until commit.
func TestHoldCommitDump(t *testing.T) {
	testenv.RequirePrivileged(t)
	rig := testenv.NewBridgeRig(t, "rnb")
	root, vm, sockDir := testenv.PinRoot(t, "rnb"), testenv.UniqueName("rnb"), t.TempDir()
	run := func(ctx context.Context, args ...string) (string, error) {
		var out, errb bytes.Buffer
		var code int
		err := rig.Host.Do(func() error {
			code = Run(ctx, &out, &errb, append([]string{"resilire", "dataplane", "--pin-root", root}, args...))
			return nil
		})
		if err == nil && code != 0 {
			err = &cliError{args: args, stderr: errb.String()}
		}
		return out.String(), err
	}
	if _, err := run(context.Background(), "attach", "--vm", vm, "--port", rig.Port); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := run(context.Background(), "detach", "--vm", vm); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan error, 1)
	go func() {
		_, err := run(ctx, "hold", "--vm", vm, "--manual", "--socket-dir", sockDir)
		held <- err
	}()
	defer func() {
		cancel()
		if err := <-held; err != nil {
			t.Errorf("hold: %v", err)
		}
	}()
	sock := netbuf.SocketPath(sockDir, vm)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := netbuf.HolderStats(ctx, sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("holder not up: %v", err)
		}
	}
	guest, err := testenv.OpenPacketSock(rig.Guest, rig.GuestIf)
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	client, err := testenv.OpenPacketSock(rig.Client, rig.ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	frame := append(append(append([]byte{}, rig.ClientMAC...), rig.GuestMAC...), 0x88, 0xb5) // local experimental ethertype
	frame = append(frame, []byte(strings.Repeat("rnb-held", 8))...)
	if err := guest.Send(frame); err != nil {
		t.Fatal(err)
	}
	if got, _ := client.Collect(time.Second, 0); len(got) != 0 {
		t.Fatalf("client got %d frames before commit", len(got))
	}
	pcap := filepath.Join(t.TempDir(), "held.pcap")
	if _, err := run(ctx, "dump", "--vm", vm, "--socket-dir", sockDir, "--pcap", pcap); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if data, _, err := rd.ReadPacketData(); err != nil || !bytes.Equal(data, frame) {
		t.Fatalf("dump: %v, first frame equal: %v", err, bytes.Equal(data, frame))
	}
	out, err := run(ctx, "commit", "--vm", vm, "--socket-dir", sockDir)
	if err != nil || !strings.Contains(out, "released epochs <= 1") {
		t.Fatalf("commit: %q, %v", out, err)
	}
	got, _ := client.Collect(2*time.Second, 1)
	if len(got) != 1 || !bytes.Equal(got[0], frame) {
		t.Fatalf("after commit the client got %d frames, want the held one", len(got))
	}
}

type cliError struct {
	args   []string
	stderr string
}

func (e *cliError) Error() string { return strings.Join(e.args, " ") + ": " + e.stderr }
