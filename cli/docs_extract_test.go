// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Extraction of the `resilire ...` command lines the repository documents
// or runs, for docs_cmds_test.go. The rules, applied to each source:
//
//   - Markdown: lines in fenced or 4-space-indented code blocks are shell;
//     in prose only inline code spans starting with "resilire " count, and
//     those are references (partial: required flags may be left out).
//   - Shell scripts and Makefile recipes are shell; comment lines are skipped.
//   - The systemd unit: its header comments document RESILIRE_ARGS examples;
//     ExecStart has its specifiers substituted (%i -> guest) and
//     $RESILIRE_ARGS replaced by each example in turn.
//
// In shell text a backslash-newline joins lines (the command keeps the
// first line's number); `#` starts a comment; ; && || | ( ) split commands.
// A command is a word naming the binary (…/resilire, or $(BIN) in make,
// $RESILIRE in scripts/traces.sh) at command position, after any
// VAR=value, sudo, exec or env prefix. Its arguments run to the end of the
// command, minus redirections. A word VAR="…" assigning one of argVars is
// a resilire argument list too (the EnvironmentFile line and the script
// variable holding it), unless it is only another variable.
// Shell variables, $(…) substitutions, make references and <placeholders>
// become placeholderWord; substituteArgs gives each a typed sample value.
// An ellipsis word (… or ...) stands for more arguments and is dropped.

// placeholderWord stands for anything the text leaves to the reader.
const placeholderWord = "\x00"

// binVars are variables that hold the resilire binary.
var binVars = map[string]bool{"BIN": true, "RESILIRE": true}

// argVars are variables that hold a resilire argument list.
var argVars = []string{"RESILIRE_ARGS", "args"}

// docCmd is one documented command line.
type docCmd struct {
	pos     string   // file:line
	args    []string // after the binary; may hold placeholderWord
	partial bool     // a prose reference: required flags may be missing
}

// lineSrc is one logical line of a source with its first line number.
type lineSrc struct {
	n    int
	text string
}

// readLines reads path, joining backslash continuations.
func readLines(path string) ([]lineSrc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []lineSrc
	sc := bufio.NewScanner(f)
	n, start, cur, cont := 0, 0, "", false
	for sc.Scan() {
		n++
		l := sc.Text()
		if !cont {
			start, cur = n, ""
		}
		if cont = strings.HasSuffix(l, `\`); cont {
			cur += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		out = append(out, lineSrc{start, cur + l})
	}
	if cont {
		out = append(out, lineSrc{start, cur})
	}
	return out, sc.Err()
}

var (
	inlineCode  = regexp.MustCompile("`(resilire [^`]*)`")
	angleHolder = regexp.MustCompile(`<[A-Za-z][A-Za-z0-9_-]*>`)
)

// markdownCmds extracts the commands of a Markdown file.
func markdownCmds(path string, lines []lineSrc) []docCmd {
	var out []docCmd
	fenced := false
	for _, l := range lines {
		pos := fmt.Sprintf("%s:%d", path, l.n)
		if strings.HasPrefix(strings.TrimSpace(l.text), "```") {
			fenced = !fenced
			continue
		}
		if fenced || strings.HasPrefix(l.text, "    ") || strings.HasPrefix(l.text, "\t") {
			out = append(out, shellCmds(pos, angleHolder.ReplaceAllString(l.text, placeholderWord))...)
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(l.text, -1) {
			for _, c := range shellCmds(pos, angleHolder.ReplaceAllString(m[1], placeholderWord)) {
				if len(c.args) > 0 { // `resilire …` names the program, not a command
					c.partial = true
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// scriptCmds extracts the commands of a shell script.
func scriptCmds(path string, lines []lineSrc) []docCmd {
	var out []docCmd
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l.text), "#") {
			continue
		}
		out = append(out, shellCmds(fmt.Sprintf("%s:%d", path, l.n), l.text)...)
	}
	return out
}

// makeCmds extracts the commands of a Makefile's recipes.
func makeCmds(path string, lines []lineSrc) []docCmd {
	var out []docCmd
	for _, l := range lines {
		if !strings.HasPrefix(l.text, "\t") {
			continue
		}
		text := strings.TrimLeft(strings.TrimSpace(l.text), "@-+")
		out = append(out, shellCmds(fmt.Sprintf("%s:%d", path, l.n), expandMake(text))...)
	}
	return out
}

var unitSpecifier = regexp.MustCompile(`%[a-zA-Z%]`)

// unitCmds extracts the RESILIRE_ARGS examples of a systemd unit and
// checks its ExecStart lines with each of them.
func unitCmds(path string, lines []lineSrc) ([]docCmd, error) {
	var examples, out []docCmd
	for _, l := range lines {
		t := strings.TrimSpace(l.text)
		if !strings.HasPrefix(t, "#") {
			continue
		}
		// Comments are prose: only RESILIRE_ARGS examples and inline code.
		pos := fmt.Sprintf("%s:%d", path, l.n)
		if strings.Contains(t, "RESILIRE_ARGS=") {
			examples = append(examples, shellCmds(pos, strings.TrimPrefix(t, "#"))...)
		}
		for _, m := range inlineCode.FindAllStringSubmatch(t, -1) {
			for _, c := range shellCmds(pos, m[1]) {
				c.partial = true
				out = append(out, c)
			}
		}
	}
	for _, l := range lines {
		cmd, ok := strings.CutPrefix(strings.TrimSpace(l.text), "ExecStart=")
		if !ok {
			continue
		}
		pos := fmt.Sprintf("%s:%d", path, l.n)
		// %i is the VM; %% a percent sign; others are not used by the unit.
		cmd = unitSpecifier.ReplaceAllStringFunc(cmd, func(s string) string {
			return map[string]string{"%i": "guest", "%I": "guest", "%%": "%"}[s]
		})
		cmd = strings.TrimLeft(cmd, "-@:+!")
		if !strings.Contains(cmd, "RESILIRE_ARGS") {
			out = append(out, shellCmds(pos, cmd)...)
			continue
		}
		if len(examples) == 0 {
			return nil, fmt.Errorf("%s: ExecStart uses $RESILIRE_ARGS but the unit documents no RESILIRE_ARGS example", pos)
		}
		for _, ex := range examples {
			// Unquoted $VAR in ExecStart splits at whitespace, honouring quotes.
			args := strings.Join(quoteAll(ex.args), " ")
			line := strings.NewReplacer("${RESILIRE_ARGS}", args, "$RESILIRE_ARGS", args).Replace(cmd)
			out = append(out, shellCmds(pos+" with RESILIRE_ARGS of "+ex.pos, line)...)
		}
	}
	return append(out, examples...), nil
}

// quoteAll single-quotes words so that shellWords gives them back.
func quoteAll(ws []string) []string {
	q := make([]string, len(ws))
	for i, w := range ws {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return q
}

// docSources lists what the test reads, relative to root.
func docSources(root string) (md, sh, mk, units []string, err error) {
	globs := func(pats ...string) []string {
		var out []string
		for _, p := range pats {
			m, gerr := filepath.Glob(filepath.Join(root, p))
			if gerr != nil {
				err = gerr
			}
			out = append(out, m...)
		}
		return out
	}
	md = globs("README.md", "ARCHITECTURE.md", "docs/*.md")
	sh = globs("deploy/vagrant/*.sh", "scripts/*.sh", ".ci/run")
	mk = globs("Makefile", "mk/*.mk")
	units = globs("deploy/*.service")
	return md, sh, mk, units, err
}

// allDocCmds extracts every documented command under root.
func allDocCmds(root string) ([]docCmd, error) {
	md, sh, mk, units, err := docSources(root)
	if err != nil {
		return nil, err
	}
	var out []docCmd
	for _, set := range []struct {
		files []string
		fn    func(string, []lineSrc) ([]docCmd, error)
	}{
		{md, noErr(markdownCmds)}, {sh, noErr(scriptCmds)}, {mk, noErr(makeCmds)}, {units, unitCmds},
	} {
		for _, f := range set.files {
			lines, err := readLines(f)
			if err != nil {
				return nil, err
			}
			rel, _ := filepath.Rel(root, f)
			cmds, err := set.fn(rel, lines)
			if err != nil {
				return nil, err
			}
			out = append(out, cmds...)
		}
	}
	return out, nil
}

func noErr(fn func(string, []lineSrc) []docCmd) func(string, []lineSrc) ([]docCmd, error) {
	return func(p string, l []lineSrc) ([]docCmd, error) { return fn(p, l), nil }
}
