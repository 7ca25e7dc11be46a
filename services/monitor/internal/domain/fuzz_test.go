package domain

import (
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzEscape checks that escaped values are valid UTF-8 without control,
// line separator or bidirectional characters, whatever the input.
func FuzzEscape(f *testing.F) {
	for _, seed := range []string{"plain", "a\nb", "\x1b[2J", "\xff\xfe", "\u2028", "\u202e"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Escape(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Escape(%q) = %q is not valid UTF-8", s, out)
		}
		for _, r := range out {
			if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
				unicode.Is(unicode.Bidi_Control, r) {
				t.Fatalf("Escape(%q) = %q keeps %U", s, out, r)
			}
		}
	})
}
