// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (path -> content) under a new temporary root.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// failures extracts and parses every command under root and returns
// "pos: error" for each one that fails.
func failures(t *testing.T, root string) []string {
	t.Helper()
	cmds, err := allDocCmds(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cmds {
		if err := parseOnly(c.args, c.partial); err != nil {
			out = append(out, c.pos+": "+err.Error())
		}
	}
	return out
}

// The negative controls: one misspelled line per kind of source must be
// reported with its file:line.
func TestDocumentedCommandsCatchMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, file, body, want string
	}{
		{"unknown flag in a code block", "README.md",
			"Run:\n\n    resilire protect --vm a --domain qemu --qemu-config a.json --bakup h:1\n",
			"README.md:3: flag provided but not defined: -bakup"},
		{"unknown command in prose", "docs/x.md", "Then `resilire protekt` checkpoints.\n",
			"docs/x.md:1: No help topic for 'protekt'"},
		{"unknown subcommand", "docs/x.md", "```\nsudo resilire dataplane atach --vm a --port p\n```\n",
			"docs/x.md:2: "},
		{"missing domain", "README.md", "    resilire protect --vm a --backup h:1\n",
			"README.md:1: --domain is required: qemu or xen"},
		{"sim refused", "README.md", "    resilire standby --vm a --domain sim\n",
			"README.md:1: --domain sim: the simulated guest is for tests only"},
		{"continuation keeps the first line", "docs/x.md", "```sh\nx=1\nresilire standby --vm a \\\n  --domain qemu\n```\n",
			"docs/x.md:3: --domain qemu needs --qemu-config FILE"},
		{"stray positional", "README.md", "    resilire protect --vm a extra --domain xen --backup h:1\n",
			"README.md:1: Required flag"},
		{"unit example", "deploy/resilire@.service",
			"# primary: RESILIRE_ARGS=\"protect --vm guest --domain xen --port x --peer h:1\"\n[Service]\nExecStart=/usr/local/bin/resilire $RESILIRE_ARGS\n",
			"deploy/resilire@.service:3 with RESILIRE_ARGS of deploy/resilire@.service:1: flag provided but not defined: -port"},
		{"unit ExecStart", "deploy/resilire@.service", "[Service]\nExecStart=/usr/local/bin/resilire standby --vm %i --domain qemu --qemu-config /etc/%i.jsn --listn :1\n",
			"deploy/resilire@.service:2: flag provided but not defined: -listn"},
		{"env file written by a script", "deploy/vagrant/start.sh",
			"#!/bin/bash\nport=1\necho 'RESILIRE_ARGS=\"standby --vm g --domain xen --listen :7 --xen-memory-mib 256\"' > /etc/resilire/g.env\n",
			"deploy/vagrant/start.sh:3: flag provided but not defined: -xen-memory-mib"},
		{"script variable", "deploy/vagrant/start.sh",
			"#!/bin/bash\nargs=\"protect --vm guest --domain xen --bakup 192.168.56.12:$port\"\necho \"RESILIRE_ARGS=\\\"$args\\\"\" > f\n",
			"deploy/vagrant/start.sh:2: flag provided but not defined: -bakup"},
		{"make recipe", "mk/x.mk", "x:\n\t$(BIN) trace info --blok $(CODEC_BLOCK) $(foreach t,$(T),$(t))\n",
			"mk/x.mk:2: flag provided but not defined: -blok"},
		{"make recipe missing a required flag", "Makefile", "x:\n\t@bin/resilire trace record --interval 50ms -- true >/dev/null 2>&1\n",
			"Makefile:2: Required flag \"out\" not set"},
		{"typed placeholder", "mk/x.mk", "x:\n\t$(BIN) bench engine --epochs $(N) --trace $(T) --warmup 2\n",
			"mk/x.mk:2: flag provided but not defined: -warmup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := failures(t, writeTree(t, map[string]string{tc.file: tc.body}))
			pos, msg, _ := strings.Cut(tc.want, ": ")
			found := false
			for _, f := range got {
				found = found || strings.HasPrefix(f, pos+": ") && strings.Contains(f, msg)
			}
			if !found {
				t.Errorf("want a failure %q, got %q", tc.want, got)
			}
		})
	}
}

// The same sources, spelled right, pass: placeholders get values of their
// flag's type, redirections and operators end a command.
func TestDocumentedCommandsAcceptPlaceholders(t *testing.T) {
	root := writeTree(t, map[string]string{
		"README.md": "    resilire protect --vm <vm> --domain qemu --qemu-config $CFG --backup ${HOST}:7470 --interval $IV \\\n" +
			"        --heartbeat-timeout ${HB}ms 2>&1 | tee log && resilire status\n",
		"mk/x.mk":   "x:\n\t$(BIN) bench engine --epochs $(N) $(if $(T),--trace $(T))\n",
		"docs/x.md": "Every `resilire …` line; `resilire dataplane attach --vm <vm> …` pins.\n",
		"deploy/vagrant/start.sh": "#!/bin/bash\nargs=\"standby --vm g --domain xen --xen-config /etc/g.cfg --fence-cmd 'fence x'\"\n" +
			"echo \"RESILIRE_ARGS=\\\"$args\\\"\" > f\n",
	})
	cmds, err := allDocCmds(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 5 {
		t.Errorf("want 5 commands (protect, status, bench engine, standby, dataplane attach), got %d: %v", len(cmds), cmds)
	}
	if got := failures(t, root); len(got) != 0 {
		t.Errorf("failures on good lines: %q", got)
	}
}
