// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"path"
	"regexp"
	"strings"
)

// A small shell reader for docs_extract_test.go: enough of sh's word
// splitting, quoting and operators for the command lines we document.

// shellToken is a word, or an operator (redirection, command separator).
type shellToken struct {
	text string
	op   bool
}

// shellWords splits s like sh: quotes are removed, $VAR, ${VAR}, $(…) and
// `…` become placeholderWord (a binVars variable becomes "resilire"),
// `#` at a word start ends the line, and ; & | ( ) > < are operators
// ("redir" for a redirection, whose target word follows unless it is &N).
func shellWords(s string) []shellToken {
	var out []shellToken
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			out = append(out, shellToken{text: cur.String()})
		}
		cur.Reset()
		inWord = false
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == ' ' || r == '\t':
			flush()
		case r == '#' && !inWord:
			return out
		case r == '\'':
			inWord = true
			for i++; i < len(rs) && rs[i] != '\''; i++ {
				cur.WriteRune(rs[i])
			}
		case r == '"':
			inWord = true
			for i++; i < len(rs) && rs[i] != '"'; i++ {
				switch {
				case rs[i] == '\\' && i+1 < len(rs) && strings.ContainsRune("\"\\$`", rs[i+1]):
					i++
					cur.WriteRune(rs[i])
				case rs[i] == '$' || rs[i] == '`':
					i = substitution(rs, i, &cur)
				default:
					cur.WriteRune(rs[i])
				}
			}
		case r == '\\' && i+1 < len(rs):
			inWord = true
			i++
			cur.WriteRune(rs[i])
		case r == '$' || r == '`':
			inWord = true
			i = substitution(rs, i, &cur)
		case r == '>' || r == '<':
			if w := cur.String(); inWord && strings.Trim(w, "0123456789") == "" {
				cur.Reset()
				inWord = false
			}
			flush()
			for i+1 < len(rs) && strings.ContainsRune("<>|", rs[i+1]) {
				i++
			}
			out = append(out, shellToken{text: "redir", op: true})
			if i+1 < len(rs) && rs[i+1] == '&' { // >&2, 2>&1: no target word
				for i++; i+1 < len(rs) && strings.ContainsRune("0123456789-", rs[i+1]); i++ {
				}
				out = append(out, shellToken{text: "fd"})
			}
		case strings.ContainsRune(";&|()", r):
			flush()
			for i+1 < len(rs) && strings.ContainsRune(";&|", rs[i+1]) {
				i++
			}
			out = append(out, shellToken{text: string(r), op: true})
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}

var shellName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*`)

// substitution writes what the expansion at rs[i] stands for and returns
// the index of its last rune.
func substitution(rs []rune, i int, cur *strings.Builder) int {
	open, close := rs[i], rune(0)
	switch {
	case open == '`':
		close = '`'
	case i+1 < len(rs) && rs[i+1] == '(':
		open, close = '(', ')'
		i++
	case i+1 < len(rs) && rs[i+1] == '{':
		open, close = '{', '}'
		i++
	}
	name := ""
	if close == 0 { // $NAME or $1, $@, ...
		if m := shellName.FindString(string(rs[i+1:])); m != "" {
			name, i = m, i+len([]rune(m))
		} else if i+1 < len(rs) {
			i++
		}
	} else {
		start, depth := i+1, 1
		for i++; i < len(rs); i++ {
			if rs[i] == close && (open == '`' || depth == 1) {
				break
			}
			if rs[i] == open && open != '`' {
				depth++
			} else if rs[i] == close {
				depth--
			}
		}
		name = string(rs[start:min(i, len(rs))])
	}
	if binVars[name] {
		cur.WriteString("resilire")
	} else {
		cur.WriteString(placeholderWord)
	}
	return i
}

// commandWrappers may precede a command without changing it.
var commandWrappers = map[string]bool{"sudo": true, "exec": true, "env": true, "nice": true, "time": true,
	"command": true, "!": true, "if": true, "then": true, "do": true, "else": true, "while": true, "until": true, "{": true}

var assignment = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// shellCmds finds the resilire commands and argVars assignments in one
// logical shell line.
func shellCmds(pos, line string) []docCmd {
	var out []docCmd
	var seg []string
	end := func() {
		lead := true
		for i, w := range seg {
			m := assignment.FindStringSubmatch(w)
			if m != nil {
				if v := envFileValue(m[2]); isArgVar(m[1]) && strings.Trim(v, placeholderWord+" ") != "" {
					out = append(out, docCmd{pos: pos, args: dropEllipses(words(shellWords(v)))})
				}
				continue
			}
			if lead && commandWrappers[w] {
				continue
			}
			if lead && path.Base(w) == "resilire" {
				out = append(out, docCmd{pos: pos, args: dropEllipses(seg[i+1:])})
				break
			}
			lead = false
		}
		seg = nil
	}
	toks := shellWords(line)
	for i := 0; i < len(toks); i++ {
		switch t := toks[i]; {
		case t.op && t.text == "redir":
			i++ // its target
		case t.op:
			end()
		default:
			seg = append(seg, t.text)
		}
	}
	end()
	return out
}

// envFileValue is the value of VAR=value as a shell assignment after
// expansion, or as written into an EnvironmentFile (VAR="…"): there the
// outer quotes go, and the rest is split later honouring inner quotes.
func envFileValue(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// dropEllipses removes the words that say "more arguments here".
func dropEllipses(args []string) []string {
	var out []string
	for _, a := range args {
		if a != "…" && a != "..." {
			out = append(out, a)
		}
	}
	return out
}

func isArgVar(name string) bool {
	for _, v := range argVars {
		if v == name {
			return true
		}
	}
	return false
}

// words drops the operators of an argument list.
func words(toks []shellToken) []string {
	var out []string
	for _, t := range toks {
		if !t.op {
			out = append(out, t.text)
		}
	}
	return out
}

// makeValues are the make variables whose value matters to a command line.
var makeValues = map[string]string{"BIN": "bin/resilire", "CURDIR": ".", "GO": "go"}

// expandMake expands make references in a recipe line: $$ is $, $(foreach
// v,list,text) is text once, $(if c,then,else) is then, makeValues are
// themselves, and every other reference is placeholderWord.
func expandMake(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case '$':
			b.WriteByte('$')
		case '(', '{':
			close := map[byte]byte{'(': ')', '{': '}'}[s[i]]
			depth, start := 1, i+1
			for i++; i < len(s) && depth > 0; i++ {
				switch s[i] {
				case s[start-1]:
					depth++
				case close:
					depth--
				}
			}
			i--
			b.WriteString(makeRef(s[start:min(i, len(s))]))
		default:
			b.WriteString(placeholderWord)
		}
	}
	return b.String()
}

// makeRef expands the inside of one $(…).
func makeRef(ref string) string {
	if v, ok := makeValues[ref]; ok {
		return v
	}
	fn, rest, _ := strings.Cut(ref, " ")
	args := splitMakeArgs(rest)
	switch {
	case fn == "foreach" && len(args) == 3:
		return expandMake(args[2])
	case fn == "if" && len(args) >= 2:
		return expandMake(args[1])
	}
	return placeholderWord
}

// splitMakeArgs splits a function's arguments at top-level commas.
func splitMakeArgs(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '{':
			depth++
		case ')', '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}
