// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/resilire/resilire/checkpointer"
)

// TestAgentsReplicateDisk: protect serves --disk-image on --disk-socket
// and standby keeps its own copy; once protected, the backup's image is
// the primary's (the first checkpoint carries the whole disk).
func TestAgentsReplicateDisk(t *testing.T) {
	dir := t.TempDir()
	pimg, bimg := filepath.Join(dir, "p.img"), filepath.Join(dir, "b.img")
	data := bytes.Repeat([]byte("resilire"), 64<<10) // 512 KiB
	if err := os.WriteFile(pimg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bimg, make([]byte, len(data)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := freeAddrs(t, 3)
	repl, mb, mp := a[0], a[1], a[2]
	common := []string{"--vm", "vm1", "--domain", "sim", "--unsafe-allow-sim", "--sim-memory-mib", "4", "--sim-hot-pages", "256", "--heartbeat-timeout", "400ms"}
	stopB, errB := startAgent(t, append([]string{"standby", "--listen", repl, "--metrics-addr", mb, "--unsafe-no-fence", "--disk-image", bimg}, common...)...)
	waitStatus(t, mb, checkpointer.StateWaiting)
	stopP, errP := startAgent(t, append([]string{"protect", "--backup", repl, "--metrics-addr", mp, "--interval", "20ms",
		"--disk-image", pimg, "--disk-socket", filepath.Join(dir, "nbd.sock")}, common...)...)
	waitStatus(t, mb, checkpointer.StateStandby)
	if code := stopP(); code != 0 {
		t.Fatalf("protect exited %d: %s", code, errP.String())
	}
	stopB()
	got, err := os.ReadFile(bimg)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("backup image differs from the primary's (%v):\n%s", err, errB.String())
	}
}
