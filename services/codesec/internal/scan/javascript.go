package scan

import (
	"strings"
)

// maxTemplateDepth bounds template literals nested through ${...}; deeper
// ones are read as plain text, so hostile nesting costs linear time.
const maxTemplateDepth = 16

// tokenizeJavaScript splits JavaScript source into tokens: comments, string
// and template literals (the expressions inside ${...} are tokenized too),
// regular-expression literals, names, numbers and operators. The token
// before a '/' decides whether it starts a regular expression or divides.
// Newlines end statements only loosely, which is enough for the analysis.
func tokenizeJavaScript(src string) []token {
	lx := lexer{src: src, line: 1}
	lx.javascript()
	lx.emit(tokNewline, "\n", true)

	return lx.toks
}

func (lx *lexer) javascript() {
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch {
		case strings.HasPrefix(lx.src[lx.pos:], "//"):
			lx.skipLine()
		case strings.HasPrefix(lx.src[lx.pos:], "/*"):
			lx.blockComment()
		case c == '\n':
			lx.emit(tokNewline, "\n", true)
			lx.pos++
			lx.line++
		case c == ' ' || c == '\t' || c == '\r':
			lx.pos++
		case c == '\'' || c == '"':
			lx.jsString(c)
		case c == '`':
			lx.template()
		case c == '/' && lx.regexAllowed():
			lx.regex()
		case isIdentStart(lx.src[lx.pos:]) || c == '$':
			lx.emit(tokName, lx.ident(), true)
		case isDigit(c) || c == '.' && isDigit(lx.peek(1)):
			lx.emit(tokNumber, lx.number(), true)
		default:
			lx.emit(tokOp, lx.operator(), true)
		}
	}
}

func (lx *lexer) blockComment() {
	end := strings.Index(lx.src[lx.pos+2:], "*/")
	if end < 0 {
		end = len(lx.src) - lx.pos - 2
	} else {
		end += 2
	}
	lx.line += strings.Count(lx.src[lx.pos:lx.pos+2+end], "\n")
	lx.pos = min(len(lx.src), lx.pos+2+end)
}

// regexAllowed reports whether a '/' here starts a regular expression: at
// the start, after an operator other than a closing bracket, or after a
// keyword that precedes an expression.
func (lx *lexer) regexAllowed() bool {
	for i := len(lx.toks) - 1; i >= 0; i-- {
		t := lx.toks[i]
		switch t.kind {
		case tokNewline:
			continue
		case tokNumber, tokString:
			return false
		case tokName:
			switch t.text {
			case "return", "typeof", "case", "do", "else", "in", "of", "new", "delete",
				"void", "throw", "yield", "await", "instanceof":
				return true
			}
			return false
		case tokOp:
			return t.text != ")" && t.text != "]" && t.text != "}"
		}
	}

	return true
}

func (lx *lexer) regex() {
	line := lx.line
	start := lx.pos
	lx.pos++
	inClass := false
	for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
		c := lx.src[lx.pos]
		lx.pos++
		switch {
		case c == '\\':
			lx.pos++
		case c == '[':
			inClass = true
		case c == ']':
			inClass = false
		case c == '/' && !inClass:
			for lx.pos < len(lx.src) && isLetter(lx.src[lx.pos]) {
				lx.pos++
			}
			lx.toks = append(lx.toks, token{kind: tokNumber, text: lx.src[start:lx.pos], line: line})
			return
		}
	}
	// An unterminated regular expression ends at the line end. Like a
	// terminated one, it is an opaque value (a number token), never a
	// string, so its slashes never look like a path.
	lx.toks = append(lx.toks, token{kind: tokNumber, text: lx.src[start:min(lx.pos, len(lx.src))], line: line})
}

func (lx *lexer) jsString(quote byte) {
	line := lx.line
	lx.pos++
	var b strings.Builder
	for lx.pos < len(lx.src) && lx.src[lx.pos] != quote && lx.src[lx.pos] != '\n' {
		if lx.src[lx.pos] == '\\' && lx.pos+1 < len(lx.src) {
			lx.pos += jsEscape(lx.src[lx.pos:], &b, &lx.line)
			continue
		}
		b.WriteByte(lx.src[lx.pos])
		lx.pos++
	}
	lx.pos++
	lx.toks = append(lx.toks, token{kind: tokString, text: b.String(), line: line, exact: true})
}

// template reads a template literal. Its text pieces form one string token
// (exact only without substitutions), and each ${...} expression is
// tokenized in place, so code hidden in a substitution is still seen.
func (lx *lexer) template() {
	line := lx.line
	lx.pos++
	var b strings.Builder
	exact := true
	var inner []token
	for lx.pos < len(lx.src) && lx.src[lx.pos] != '`' {
		switch {
		case lx.src[lx.pos] == '\\' && lx.pos+1 < len(lx.src):
			lx.pos += jsEscape(lx.src[lx.pos:], &b, &lx.line)
		case strings.HasPrefix(lx.src[lx.pos:], "${") && lx.depth < maxTemplateDepth:
			exact = false
			end := matchBrace(lx.src, lx.pos+1)
			sub := lexer{src: lx.src[lx.pos+2 : end], line: lx.line, depth: lx.depth + 1}
			sub.javascript()
			inner = append(inner, sub.toks...)
			lx.line = sub.line
			lx.pos = min(len(lx.src), end+1)
		default:
			if lx.src[lx.pos] == '\n' {
				lx.line++
			}
			b.WriteByte(lx.src[lx.pos])
			lx.pos++
		}
	}
	lx.pos++
	lx.toks = append(lx.toks, token{kind: tokString, text: b.String(), line: line, exact: exact})
	lx.toks = append(lx.toks, inner...)
}

// matchBrace returns the index of the '}' that closes the '{' at open,
// or len(s).
func matchBrace(s string, open int) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}

	return len(s)
}

func jsEscape(s string, b *strings.Builder, line *int) int {
	if s[1] == 'u' && len(s) > 2 && s[2] == '{' {
		end := strings.IndexByte(s, '}')
		if end > 0 {
			if v, ok := parseHex(s[3:end]); ok {
				b.WriteRune(rune(v))
				return end + 1
			}
		}
	}
	switch s[1] {
	case '\n':
		*line++
		return 2
	case 'x', 'u':
		width := 2
		if s[1] == 'u' {
			width = 4
		}
		if len(s) >= 2+width {
			if v, ok := parseHex(s[2 : 2+width]); ok {
				b.WriteRune(rune(v))
				return 2 + width
			}
		}
	case 'n':
		b.WriteByte('\n')
		return 2
	case 't':
		b.WriteByte('\t')
		return 2
	}
	b.WriteByte(s[1])

	return 2
}

func parseHex(s string) (uint64, bool) {
	if s == "" || len(s) > 8 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			v = v*16 + uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v*16 + uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v*16 + uint64(c-'A'+10)
		default:
			return 0, false
		}
	}

	return v, true
}
