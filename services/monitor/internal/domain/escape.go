package domain

import (
	"strconv"
	"strings"
	"unicode"
)

// Escape returns s with control characters, backslashes, invalid UTF-8,
// bidirectional controls and Unicode line separators written as Go escapes
// (\n, \x1b, \u2028). A value copied from an event into a log line or a
// threat report then cannot start a new line or move the terminal cursor.
// Other printable text is unchanged.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if needsEscape(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}

	var b strings.Builder
	for i, r := range s {
		if r == unicode.ReplacementChar && len(s) > i && !strings.HasPrefix(s[i:], "\uFFFD") {
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
			continue
		}
		if needsEscape(r) {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}

	return b.String()
}

func needsEscape(r rune) bool {
	return r == unicode.ReplacementChar || r == '\\' || unicode.IsControl(r) ||
		r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r)
}
