// SPDX-License-Identifier: Apache-2.0

package netbuf

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/resilire/resilire/dataplane"
)

// TestHolderCommitAndDump runs the CLI's holder in manual mode against a
// pinned data plane and drives it through the control socket.
func TestHolderCommitAndDump(t *testing.T) {
	for _, path := range paths {
		t.Run(path.String(), func(t *testing.T) { testHolderCommitAndDump(t, path) })
	}
}

func testHolderCommitAndDump(t *testing.T, path dataplane.CapturePath) {
	r := newNSRig(t)
	r.staticNeighbors(t)
	r.attachPort(t, path)
	cfg := HolderConfig{VM: rigVM, PinRoot: r.pinRoot, SocketDir: t.TempDir()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Host.Do(func() error { return RunHolder(ctx, cfg) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("holder: %v", err)
		}
	})
	sock := SocketPath(cfg.SocketDir, rigVM)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := HolderStats(ctx, sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("holder did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	g, c := r.udpPair(t, 7007)
	sendSeq(t, g, 0, 30, 16)
	if got := recvSeq(t, c, time.Second); len(got) != 0 {
		t.Fatalf("%d datagrams left a manual holder before commit", len(got))
	}
	var pcap bytes.Buffer
	if _, err := Dump(ctx, sock, &pcap); err != nil {
		t.Fatal(err)
	}
	rd, err := pcapgo.NewReader(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, _, err := rd.ReadPacketData(); err != nil {
			break
		}
	}
	if n != 30 {
		t.Fatalf("dump holds %d frames, want 30", n)
	}
	e, err := Commit(ctx, sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantSeq(t, recvSeqN(t, c, 30, 10*time.Second), 0, 30)
	bad := e + 5
	if _, err := Commit(ctx, sock, &bad); err == nil {
		t.Fatalf("commit of future epoch %d succeeded", bad)
	}
}
