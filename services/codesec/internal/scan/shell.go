package scan

import (
	"path"
	"regexp"
	"strings"
)

// commandPrefixes are words after which the next word is a command again:
// shell keywords and programs that run their arguments.
var commandPrefixes = map[string]bool{
	"if": true, "then": true, "do": true, "else": true, "elif": true, "while": true,
	"until": true, "!": true, "time": true, "nohup": true, "sudo": true, "exec": true,
	"eval": true, "command": true, "builtin": true, "env": true, "xargs": true, "nice": true,
	"timeout": true, "setsid": true, "doas": true, "stdbuf": true, "watch": true,
}

var shellAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=`)

// analyzeShell finds the command words, words and lines of a POSIX shell or
// bash script. Quotes are removed from words. A command substitution,
// backquotes, a pipe or a list operator put the next word in command
// position, also inside double quotes.
func analyzeShell(src string) *facts {
	f := &facts{}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		line := lines[i]
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + lines[i]
		}
		if start == 0 && strings.HasPrefix(line, "#!") {
			continue
		}
		sl := shellLine{facts: f, line: start + 1, cmdPos: true}
		code := sl.scan(line)
		if strings.TrimSpace(code) != "" {
			f.lines = append(f.lines, valueFact{value: code, line: start + 1})
		}
	}
	if hasForkBomb(f.lines) {
		f.checks = append(f.checks, valueFact{value: "fork_bomb", line: forkBombLine(f.lines)})
	}

	return f
}

type shellLine struct {
	facts  *facts
	line   int
	cmdPos bool
	word   strings.Builder
	quoted bool
	depth  int // open '(' on this line
}

// scan reads one logical line into words and returns it without its
// comment.
func (s *shellLine) scan(line string) string {
	inSingle, inDouble := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inSingle:
			if c == '\'' {
				inSingle = false
			} else {
				s.word.WriteByte(c)
			}
		case inDouble:
			inDouble = s.double(line, &i)
		case c == '#' && s.word.Len() == 0 && !s.quoted:
			s.flush()
			return line[:i]
		case c == '\'':
			inSingle, s.quoted = true, true
		case c == '"':
			inDouble, s.quoted = true, true
		case c == '\\' && i+1 < len(line):
			i++
			s.word.WriteByte(line[i])
		case c == '$' && strings.HasPrefix(line[i:], "$(("):
			s.word.WriteString("$((")
			i += 2
		case c == '$' && i+1 < len(line) && line[i+1] == '(':
			s.flush()
			s.cmdPos = true
			s.depth++
			i++
		case c == ' ' || c == '\t':
			s.flush()
		case strings.HasPrefix(line[i:], "(("):
			// An arithmetic command: its words are variables, not commands.
			s.flush()
			end := strings.Index(line[i:], "))")
			if end < 0 {
				return line
			}
			i += end + 1
			s.cmdPos = false
		case c == '(':
			s.flush()
			s.depth++
			s.cmdPos = true
		case c == ')' && s.depth == 0:
			// A ')' with no '(' open ends a case pattern such as "w)": the
			// word is a pattern, not a command.
			s.cmdPos = false
			s.flush()
			s.cmdPos = true
		case strings.IndexByte(";&|){}`", c) >= 0:
			if c == ')' {
				s.depth--
			}
			s.flush()
			s.cmdPos = true
		default:
			s.word.WriteByte(c)
		}
	}
	s.flush()

	return line
}

// double handles one byte inside double quotes and reports whether the
// quotes are still open.
func (s *shellLine) double(line string, i *int) bool {
	c := line[*i]
	switch {
	case c == '"':
		return false
	case c == '\\' && *i+1 < len(line) && strings.IndexByte("$`\"\\", line[*i+1]) >= 0:
		*i++
		s.word.WriteByte(line[*i])
	case c == '`' || c == '$' && *i+1 < len(line) && line[*i+1] == '(' &&
		!strings.HasPrefix(line[*i:], "$(("):
		// A command substitution inside double quotes is a new command
		// line with its own word splitting.
		s.flush()
		start, end := *i+1, strings.IndexByte(line[*i+1:], '`')
		if c == '$' {
			start, end = *i+2, matchParen(line, *i+1)-(*i+2)
		}
		if end < 0 {
			end = len(line) - start
		}
		inner := shellLine{facts: s.facts, line: s.line, cmdPos: true}
		inner.scan(line[start : start+end])
		*i = min(len(line)-1, start+end)
	default:
		s.word.WriteByte(c)
	}

	return true
}

func (s *shellLine) flush() {
	if s.word.Len() == 0 && !s.quoted {
		return
	}
	w := s.word.String()
	s.word.Reset()
	s.quoted = false
	s.facts.strings = append(s.facts.strings, stringFact{value: w, line: s.line})
	if !s.cmdPos {
		return
	}
	if shellAssignment.MatchString(w) {
		return // VAR=value before a command keeps the command position
	}
	s.facts.commands = append(s.facts.commands, valueFact{value: path.Base(w), line: s.line})
	s.cmdPos = commandPrefixes[w] || commandPrefixes[path.Base(w)]
}

var shellFunction = regexp.MustCompile(`(?:function\s+)?([^\s(){};|&]+)\s*\(\)\s*\{`)

// hasForkBomb reports a shell function whose body pipes the function into
// itself, as in ":(){ :|:& };:".
func hasForkBomb(lines []valueFact) bool {
	return forkBombLine(lines) > 0
}

func forkBombLine(lines []valueFact) int {
	var all strings.Builder
	starts := make([]int, 0, len(lines))
	for _, l := range lines {
		starts = append(starts, all.Len())
		all.WriteString(l.value + "\n")
	}
	text := all.String()
	for _, m := range shellFunction.FindAllStringSubmatchIndex(text, -1) {
		name := text[m[2]:m[3]]
		body := text[m[1]:min(len(text), m[1]+200)]
		if end := strings.IndexByte(body, '}'); end >= 0 {
			body = body[:end]
		}
		compact := strings.Join(strings.Fields(body), "")
		if strings.Contains(compact, name+"|"+name) || strings.Contains(compact, name+"&"+name) {
			for k := len(starts) - 1; k >= 0; k-- {
				if starts[k] <= m[0] {
					return lines[k].line
				}
			}
		}
	}

	return 0
}

// matchParen returns the index of the ')' that closes the '(' at open, or
// len(s).
func matchParen(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}

	return len(s)
}
