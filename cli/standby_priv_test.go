// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/resilire/resilire/checkpointer"
	"github.com/resilire/resilire/dataplane"
	"github.com/resilire/resilire/testenv"
)

// With a real data plane on the standby's guest port: when the primary
// agent is killed, the port stays blocked while the fence command runs and
// goes to pass only after it succeeded.
func TestStandbyPortGoesLiveOnlyAfterFence(t *testing.T) {
	testenv.RequirePrivileged(t)
	rig := testenv.NewBridgeRig(t, "renc")
	pinRoot := testenv.PinRoot(t, "ren")
	var port *dataplane.Port
	err := rig.Host.Do(func() (err error) {
		port, err = dataplane.Attach(dataplane.Options{Name: "ren-sb", Port: rig.Port, PinRoot: pinRoot})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rig.Host.Do(port.Detach) })
	if err := port.SetMode(dataplane.ModeBlock); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fence := fmt.Sprintf("touch %s/fencing && sleep 0.3 && touch %s/fenced", dir, dir)
	a := freeAddrs(t, 2)
	repl, mb := a[0], a[1]
	common := []string{"--vm", "ren-sb", "--sim-memory-mib", "4", "--sim-hot-pages", "256", "--heartbeat-timeout", "400ms"}
	_, errB := startAgent(t, append([]string{"standby", "--listen", repl, "--metrics-addr", mb, "--dataplane",
		"--pin-root", pinRoot, "--fence-cmd", fence}, common...)...)
	waitStatus(t, mb, checkpointer.StateWaiting)
	stopP, _ := startAgent(t, append([]string{"protect", "--backup", repl, "--metrics-addr", "", "--interval", "20ms"}, common...)...)
	waitStatus(t, mb, checkpointer.StateStandby)
	stopP() // the primary agent dies

	deadline := time.Now().Add(10 * time.Second)
	sawFencing := false
	for {
		m, err := port.Mode()
		if err != nil {
			t.Fatal(err)
		}
		_, ferr := os.Stat(filepath.Join(dir, "fenced"))
		if _, err := os.Stat(filepath.Join(dir, "fencing")); err == nil && ferr != nil {
			sawFencing = true
			if m != dataplane.ModeBlock {
				t.Fatalf("port in mode %v while the fence command runs", m)
			}
		}
		if m == dataplane.ModePass {
			if ferr != nil {
				t.Fatal("port in pass before the fence command finished")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port never went to pass; standby log:\n%s", errB.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !sawFencing {
		t.Fatal("never observed the fence command running")
	}
	waitStatus(t, mb, checkpointer.StateActive)
}
