package scan

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// tokenizePython splits Python source into tokens. It follows the lexical
// rules that matter for finding names and string values: comments, string
// prefixes (r, b, u, f and their combinations), triple quotes, escapes,
// implicit line joining inside brackets and explicit joining with a
// backslash. It returns no error: malformed input ends the current token.
func tokenizePython(src string) []token {
	lx := lexer{src: src, line: 1}
	depth := 0
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch {
		case c == '#':
			lx.skipLine()
		case c == '\\' && lx.peek(1) == '\n':
			lx.pos += 2
			lx.line++
		case c == '\n':
			if depth == 0 {
				lx.emit(tokNewline, "\n", true)
			}
			lx.pos++
			lx.line++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			lx.pos++
		case isPyStringStart(lx.src[lx.pos:]):
			lx.pythonString()
		case isIdentStart(lx.src[lx.pos:]):
			lx.emit(tokName, lx.ident(), true)
		case c >= '0' && c <= '9' || c == '.' && isDigit(lx.peek(1)):
			lx.emit(tokNumber, lx.number(), true)
		default:
			op := lx.operator()
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth = max(0, depth-1)
			}
			lx.emit(tokOp, op, true)
		}
	}
	lx.emit(tokNewline, "\n", true)

	return lx.toks
}

// lexer is the cursor the tokenizers share.
type lexer struct {
	src   string
	pos   int
	line  int
	toks  []token
	depth int // template literal nesting, JavaScript only
}

func (lx *lexer) emit(kind tokenKind, text string, exact bool) {
	lx.toks = append(lx.toks, token{kind: kind, text: text, line: lx.line, exact: exact})
}

func (lx *lexer) peek(n int) byte {
	if lx.pos+n < len(lx.src) {
		return lx.src[lx.pos+n]
	}

	return 0
}

func (lx *lexer) skipLine() {
	for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
		lx.pos++
	}
}

func (lx *lexer) ident() string {
	start := lx.pos
	for lx.pos < len(lx.src) {
		r, size := utf8.DecodeRuneInString(lx.src[lx.pos:])
		if r != '_' && r != '$' && !unicode.IsLetter(r) && !unicode.IsDigit(r) &&
			!unicode.Is(unicode.Mn, r) && !unicode.Is(unicode.Mc, r) {
			break
		}
		lx.pos += size
	}

	return lx.src[start:lx.pos]
}

func (lx *lexer) number() string {
	start := lx.pos
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		if !isDigit(c) && !isLetter(c) && c != '.' && c != '_' {
			break
		}
		lx.pos++
	}

	return lx.src[start:lx.pos]
}

// operator consumes one operator or delimiter; unknown bytes become
// one-character operators.
func (lx *lexer) operator() string {
	for _, op := range []string{"**=", "//=", ">>=", "<<=", "...", "===", "!==", "=>", "?.",
		"**", "//", "==", "!=", "<=", ">=", "->", ":=", "+=", "-=", "*=", "/=", "&&", "||"} {
		if strings.HasPrefix(lx.src[lx.pos:], op) {
			lx.pos += len(op)
			return op
		}
	}
	_, size := utf8.DecodeRuneInString(lx.src[lx.pos:])
	op := lx.src[lx.pos : lx.pos+size]
	lx.pos += size

	return op
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isIdentStart(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return r == '_' || unicode.IsLetter(r)
}

// isPyStringStart reports whether s starts with an optional string prefix
// followed by a quote.
func isPyStringStart(s string) bool {
	i := 0
	for i < len(s) && i < 3 && strings.IndexByte("rRbBuUfF", s[i]) >= 0 {
		i++
	}

	return i < len(s) && (s[i] == '\'' || s[i] == '"') && validPyPrefix(s[:i])
}

func validPyPrefix(p string) bool {
	switch strings.ToLower(p) {
	case "", "r", "u", "b", "f", "br", "rb", "fr", "rf":
		return true
	}

	return false
}

func (lx *lexer) pythonString() {
	start := lx.pos
	for lx.src[lx.pos] != '\'' && lx.src[lx.pos] != '"' {
		lx.pos++
	}
	prefix := strings.ToLower(lx.src[start:lx.pos])
	raw := strings.Contains(prefix, "r")
	fstring := strings.Contains(prefix, "f")

	quote := lx.src[lx.pos : lx.pos+1]
	if strings.HasPrefix(lx.src[lx.pos:], quote+quote+quote) {
		quote = quote + quote + quote
	}
	lx.pos += len(quote)
	line := lx.line

	var b strings.Builder
	for lx.pos < len(lx.src) {
		if strings.HasPrefix(lx.src[lx.pos:], quote) {
			lx.pos += len(quote)
			break
		}
		c := lx.src[lx.pos]
		if c == '\n' {
			lx.line++
			if len(quote) == 1 { // unterminated single-quoted string
				break
			}
		}
		if c == '\\' && lx.pos+1 < len(lx.src) {
			if raw {
				b.WriteString(lx.src[lx.pos : lx.pos+2])
				lx.pos += 2
				continue
			}
			lx.pos += pyEscape(lx.src[lx.pos:], &b, &lx.line)
			continue
		}
		b.WriteByte(c)
		lx.pos++
	}

	value := b.String()
	exact := !fstring || !strings.Contains(value, "{")
	lx.toks = append(lx.toks, token{kind: tokString, text: value, line: line, exact: exact})
}

// pyEscape decodes the escape sequence at the start of s into b and returns
// how many bytes it used.
func pyEscape(s string, b *strings.Builder, line *int) int {
	switch c := s[1]; c {
	case '\n':
		*line++
		return 2
	case 'n':
		b.WriteByte('\n')
	case 't':
		b.WriteByte('\t')
	case 'r':
		b.WriteByte('\r')
	case '0', '1', '2', '3', '4', '5', '6', '7':
		n := 2
		for n < 4 && n < len(s) && s[n] >= '0' && s[n] <= '7' {
			n++
		}
		v, _ := strconv.ParseUint(s[1:n], 8, 32)
		b.WriteRune(rune(v))
		return n
	case 'x', 'u', 'U':
		width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
		if len(s) >= 2+width {
			if v, err := strconv.ParseUint(s[2:2+width], 16, 32); err == nil {
				b.WriteRune(rune(v))
				return 2 + width
			}
		}
		b.WriteString(s[:2])
	case '\\', '\'', '"':
		b.WriteByte(c)
	case 'a':
		b.WriteByte('\a')
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'v':
		b.WriteByte('\v')
	default:
		// Python keeps the backslash of an unknown escape.
		b.WriteString(s[:2])
	}

	return 2
}
