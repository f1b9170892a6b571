// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The docs must not point at files that do not exist: relative Markdown
// links, and repository paths written in backticks in prose. Which
// backticked words are paths:
//
//   - with a slash inside (`checkpointer/epoch.go`, `testenv/guest/`,
//     `.ci/run`): checked relative to the repository root or the doc's
//     directory, unless under notInRepo;
//   - a bare name with a source extension (`hosts.go`) or a trailing slash
//     (`kv/`): some file or directory of that name must exist in the tree.
//
// Absolute paths (/sys/...), placeholders (<vm>), globs, flags, and
// identifiers (fgbi.Decoder) are not paths. Code blocks are commands, which
// docs_cmds_test.go checks.

// notInRepo are prefixes of paths the docs name but a clone does not hold.
var notInRepo = map[string]string{
	"bin/":            "build output (make build)",
	"out/":            "demo output (make demo)",
	"traces/":         "recorded traces (make traces)",
	"testenv/assets/": "the test guest, built by make assets and git-ignored",
	"design/":         "the shared design notes beside the repository",
}

var (
	mdLink     = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan   = regexp.MustCompile("`([^`\\s]+)`")
	bareSource = regexp.MustCompile(`^[A-Za-z0-9_.@-]+\.(go|c|h|sh|mk|md|service)$|^[A-Za-z0-9_.-]+/$`)
	lineSuffix = regexp.MustCompile(`:\d+$`)
)

// brokenDocRefs returns "file:line: reason" for each reference under root
// that leads nowhere.
func brokenDocRefs(root string) ([]string, error) {
	names := map[string]bool{} // base names of every file, and dir names + "/"
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			names[d.Name()+"/"] = true
		} else {
			names[d.Name()] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	md, _, _, _, err := docSources(root)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range md {
		rel, _ := filepath.Rel(root, f)
		bad, err := brokenRefsIn(root, rel, names)
		if err != nil {
			return nil, err
		}
		out = append(out, bad...)
	}
	return out, nil
}

func brokenRefsIn(root, doc string, names map[string]bool) ([]string, error) {
	f, err := os.Open(filepath.Join(root, doc))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exists := func(p string) bool {
		for _, base := range []string{root, filepath.Join(root, filepath.Dir(doc))} {
			if _, err := os.Stat(filepath.Join(base, p)); err == nil {
				return true
			}
		}
		return false
	}
	var out []string
	sc := bufio.NewScanner(f)
	fenced := false
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced || strings.HasPrefix(l, "    ") || strings.HasPrefix(l, "\t") {
			continue
		}
		for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(root, filepath.Dir(doc), target)); err != nil {
				out = append(out, fmt.Sprintf("%s:%d: link to %s: no such file", doc, n, m[1]))
			}
		}
		for _, m := range codeSpan.FindAllStringSubmatch(l, -1) {
			if p := lineSuffix.ReplaceAllString(m[1], ""); !pathRefOK(p, exists, names) {
				out = append(out, fmt.Sprintf("%s:%d: `%s`: no such file or directory", doc, n, m[1]))
			}
		}
	}
	return out, sc.Err()
}

// pathRefOK reports whether the backticked word w is not a path, or a path
// that exists.
func pathRefOK(w string, exists func(string) bool, names map[string]bool) bool {
	if strings.ContainsAny(w, "<>*?$=:,()[]{}") || strings.HasPrefix(w, "/") || strings.HasPrefix(w, "-") ||
		strings.HasPrefix(w, "~") || strings.HasPrefix(w, "http") {
		return true
	}
	if inner := strings.TrimSuffix(w, "/"); strings.Contains(inner, "/") {
		for prefix := range notInRepo {
			if strings.HasPrefix(w, prefix) {
				return true
			}
		}
		return exists(w)
	}
	if bareSource.MatchString(w) {
		return names[w] || exists(w)
	}
	return true
}

func TestDocPathsExist(t *testing.T) {
	bad, err := brokenDocRefs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Error(b)
	}
}

// The negative control: a misspelled path or link in each form fails.
func TestDocPathsCatchMistakes(t *testing.T) {
	root := writeTree(t, map[string]string{
		"checkpointer/epoch.go":      "package checkpointer\n",
		"testenv/guest/kv/main.go":   "package main\n",
		"docs/other.md":              "# other\n",
		".ci/run":                    "#!/bin/sh\n",
		"README.md":                  "Read `checkpointer/epoch.go`, `kv/`, `.ci/run`, `bin/resilire` and [other](docs/other.md#top).\n",
		"ARCHITECTURE.md":            "`checkpointer/epoh.go` is the heart.\n\n    not/checked.go in a code block\n",
		"docs/xen.md":                "See [the other](othr.md), `epoch.go`, `hosts.go`, `testenv/gest/` and `fgbi.Decoder.Decode`.\n",
		"testenv/guest/kv/README.md": "not a doc source\n",
	})
	bad, err := brokenDocRefs(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ARCHITECTURE.md:1: `checkpointer/epoh.go`: no such file or directory",
		"docs/xen.md:1: link to othr.md: no such file",
		"docs/xen.md:1: `hosts.go`: no such file or directory",
		"docs/xen.md:1: `testenv/gest/`: no such file or directory",
	}
	if strings.Join(bad, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(bad, "\n"), strings.Join(want, "\n"))
	}
}
