package domain

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
)

// Character classes that key bodies draw from.
const (
	Alnum       = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	URLSafe     = Alnum + "_-"
	LowerHex    = "0123456789abcdef"
	Base32Upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	Base64Std   = Alnum + "+/"
	LowerAlnum  = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Segment is one part of a key format: a fixed literal, or between MinLen
// and MaxLen characters drawn from Charset.
type Segment struct {
	Literal string
	Charset string
	MinLen  int
	MaxLen  int
}

// Lit returns a literal segment.
func Lit(s string) Segment { return Segment{Literal: s} }

// Run returns a segment of exactly n characters from charset.
func Run(charset string, n int) Segment { return Segment{Charset: charset, MinLen: n, MaxLen: n} }

// Span returns a segment of min to max characters from charset.
func Span(charset string, minLen, maxLen int) Segment {
	return Segment{Charset: charset, MinLen: minLen, MaxLen: maxLen}
}

// Format is one shape of key that a provider issues, as a sequence of
// segments that must cover the whole value.
type Format struct {
	Kind     string
	Segments []Segment
}

// Provider names a key issuer and the formats its keys take.
type Provider struct {
	ID      string
	Formats []Format
}

// ErrUnknownProvider is returned for a provider id outside [Providers].
var ErrUnknownProvider = errors.New("keyvault: unknown provider")

// ErrMalformedKey is returned for a key value that matches none of its
// provider's formats. Errors wrapping it never contain the value.
var ErrMalformedKey = errors.New("keyvault: key does not match the provider's format")

// LookupProvider returns the provider with the given id.
func LookupProvider(id string) (Provider, error) {
	for _, p := range Providers {
		if p.ID == id {
			return p, nil
		}
	}
	ids := make([]string, 0, len(Providers))
	for _, p := range Providers {
		ids = append(ids, p.ID)
	}

	return Provider{}, fmt.Errorf("%w %q: use one of %s",
		ErrUnknownProvider, truncate(id, 32), strings.Join(ids, ", "))
}

// ValidateKey returns nil when value matches one of the provider's formats,
// and otherwise an error wrapping [ErrMalformedKey] that lists the expected
// shapes but never the value, its length or any part of it.
func (p Provider) ValidateKey(value []byte) error {
	for _, f := range p.Formats {
		if f.Match(value) {
			return nil
		}
	}
	shapes := make([]string, 0, len(p.Formats))
	for _, f := range p.Formats {
		shapes = append(shapes, f.Describe())
	}

	return fmt.Errorf("%w: a key of provider %s has one of these shapes: %s; "+
		"check that the whole key was pasted, with no spaces or line breaks",
		ErrMalformedKey, p.ID, strings.Join(shapes, "; "))
}

// Match reports whether value consists exactly of the format's segments.
func (f Format) Match(value []byte) bool { return matchSegments(f.Segments, value) }

// matchSegments backtracks over variable-length segments. Formats have at
// most a handful of segments and keys a few hundred bytes, so the search
// stays small.
func matchSegments(segs []Segment, v []byte) bool {
	if len(segs) == 0 {
		return len(v) == 0
	}
	s := segs[0]
	if s.Literal != "" {
		return len(v) >= len(s.Literal) && string(v[:len(s.Literal)]) == s.Literal &&
			matchSegments(segs[1:], v[len(s.Literal):])
	}
	n := 0
	for n < len(v) && n < s.MaxLen && strings.IndexByte(s.Charset, v[n]) >= 0 {
		n++
	}
	for ; n >= s.MinLen; n-- {
		if matchSegments(segs[1:], v[n:]) {
			return true
		}
	}

	return false
}

// Describe returns the format in words, for error messages and docs.
func (f Format) Describe() string {
	parts := make([]string, 0, len(f.Segments))
	for _, s := range f.Segments {
		parts = append(parts, s.describe())
	}

	return f.Kind + ": " + strings.Join(parts, " + ")
}

func (s Segment) describe() string {
	if s.Literal != "" {
		return fmt.Sprintf("%q", s.Literal)
	}
	count := fmt.Sprint(s.MinLen)
	if s.MaxLen != s.MinLen {
		count = fmt.Sprintf("%d-%d", s.MinLen, s.MaxLen)
	}

	return count + " " + charsetName(s.Charset)
}

func charsetName(cs string) string {
	names := map[string]string{
		Alnum: "alphanumeric", URLSafe: "url-safe (alphanumeric, '_', '-')",
		LowerHex: "lower-case hex", Base32Upper: "A-Z or 2-7", Base64Std: "base64",
		LowerAlnum: "lower-case alphanumeric", "=": "'='",
	}
	if n, ok := names[cs]; ok {
		return n
	}

	return "of [" + cs + "]"
}

// ProviderIDs returns the ids of all known providers, sorted.
func ProviderIDs() []string {
	ids := make([]string, 0, len(Providers))
	for _, p := range Providers {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)

	return ids
}

// ContainsKeyShape reports whether text, or any of its words, has the shape
// of a provider key. Free-text fields such as a purpose or a label end up in
// audit events and listings, so a key pasted into one must be rejected
// before it is stored anywhere. Words are split at whitespace and at the
// separators people type between a field name and a value.
func ContainsKeyShape(text string) bool {
	words := strings.FieldsFunc(text, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(`,;=:"'()[]{}<>`, r)
	})
	for _, w := range append(words, text) {
		for _, p := range Providers {
			for _, f := range p.Formats {
				if f.Match([]byte(w)) {
					return true
				}
			}
		}
	}

	return false
}
