// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/resilire/resilire/testenv"
)

func TestCheckConfig(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(f, []byte("CONFIG_BRIDGE=m\nCONFIG_VETH=y\n# CONFIG_TUN is not set\nCONFIG_NET_NS=n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkConfig(f, []string{"BRIDGE", "VETH"}); err != nil {
		t.Errorf("y and m options: %v", err)
	}
	err := checkConfig(f, []string{"BRIDGE", "TUN", "NET_NS"})
	if err == nil || !strings.Contains(err.Error(), "lacks CONFIG_TUN, CONFIG_NET_NS") {
		t.Errorf("missing options: %v, want both named", err)
	}
}

// The pinned kernel has what the tests need, and the module order puts
// every module after its dependencies (bridge needs stp and llc).
func TestPinnedKernelModules(t *testing.T) {
	testenv.RequirePrivileged(t) // apt-get download needs the Debian mirror and root
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := moduleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	k, err := FetchKernel(ctx, filepath.Join(root, "testenv", "assets", "kernelvm"), DefaultKernel, nil)
	if err != nil {
		t.Fatal(err)
	}
	order, err := ModuleOrder(k.ModDir, DefaultModules)
	if err != nil {
		t.Fatal(err)
	}
	pos := make(map[string]int)
	for i, f := range order {
		pos[modName(f)] = i
	}
	for _, m := range append([]string{"stp", "llc"}, DefaultModules...) {
		if _, ok := pos[m]; !ok {
			t.Errorf("module order %v lacks %s", order, m)
		}
	}
	if !(pos["llc"] < pos["stp"] && pos["stp"] < pos["bridge"]) {
		t.Errorf("module order %v: want llc, stp, then bridge", order)
	}
	if _, err := ModuleOrder(k.ModDir, []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "neither in") {
		t.Errorf("unknown module: %v", err)
	}
}
