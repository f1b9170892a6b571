// SPDX-License-Identifier: Apache-2.0

package kernelvm

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// The archive holds /init, the manifest, the modules and the test files
// with their contents, and the directories leading to them.
func TestWriteInitramfs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	initBin := write("init", "init-binary")
	testBin := write("netbuf.test", "test-binary")
	write("mods/kernel/net/bridge.ko", "bridge-module")
	k := &Kernel{ModDir: filepath.Join(dir, "mods")}
	m := Manifest{Modules: []string{"kernel/net/bridge.ko"}, Jobs: []Job{{Name: "netbuf", Binary: "/tests/netbuf.test"}}}
	out := filepath.Join(dir, "initrd.cpio")
	if err := writeInitramfs(out, initBin, k, m, []file{{testBin, "tests/netbuf.test"}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(f))
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]string)
	for _, r := range recs {
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatalf("%s: %v", r.Name, err)
		}
		got[r.Name] = string(b)
	}
	for name, want := range map[string]string{
		"init":                             "init-binary",
		"tests/netbuf.test":                "test-binary",
		"lib/modules/kernel/net/bridge.ko": "bridge-module",
		"var/run":                          "/run",
		"tests":                            "",
		"lib/modules/kernel/net":           "",
	} {
		if c, ok := got[name]; !ok || c != want {
			t.Errorf("archive entry %q = %q (present %v), want %q", name, c, ok, want)
		}
	}
	var back Manifest
	if err := json.Unmarshal([]byte(got["kernelvm/manifest.json"]), &back); err != nil || len(back.Jobs) != 1 || back.Jobs[0].Binary != "/tests/netbuf.test" {
		t.Errorf("manifest = %+v, %v; want the one netbuf job", back, err)
	}
}
