// Package scan finds and redacts secrets in sandbox output: provider API keys
// by their published shapes, and exact values that keyvault holds, by HMAC
// fingerprints of their plain, base64 and URL-encoded forms. Both are also
// found written backwards or hex-encoded, with the hex unbroken, in groups
// (xxd, hexdump, colons), as \x or 0x escapes, or reversed, and across the
// lines of xxd, hexdump and od dumps (see matchDumps). Every form costs
// one more pass over the output, so the scan stays linear in the output size
// (times the number of distinct fingerprinted key lengths).
//
// The shapes come from the facts in the gitleaks, betterleaks and trufflehog
// rule sets (prefix, length, character set), restated as our own patterns.
// Keys without a prefix (Cohere, Mistral, AWS secrets, Azure) have no
// reliable shape and are found only through fingerprints.
package scan

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"sync"
)

// Redacted replaces every secret found.
const Redacted = "[REDACTED]"

// Pattern is one provider key shape.
type Pattern struct {
	Provider string
	re       *regexp.Regexp
	// prefixes are the literals every match starts with. A text holding
	// none of them cannot match, which spares the regular expression pass.
	prefixes [][]byte
}

// patterns are the prefixed key shapes, each bounded by non-key characters.
var patterns = func() []Pattern {
	shapes := []struct {
		provider, re string
		prefixes     []string
	}{
		{"openai", `sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{58,74}T3BlbkFJ[A-Za-z0-9_-]{58,74}`, []string{"sk-"}},
		{"openai", `sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}`, []string{"sk-"}},
		{"anthropic", `sk-ant-(?:api03|admin01)-[A-Za-z0-9_-]{93}AA`, []string{"sk-ant-"}},
		{"google", `AIza[A-Za-z0-9_-]{35}`, []string{"AIza"}},
		{"groq", `gsk_[A-Za-z0-9]{52}`, []string{"gsk_"}},
		{"huggingface", `(?:hf_|api_org_)[A-Za-z0-9]{34}`, []string{"hf_", "api_org_"}},
		{"aws", `(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}`, []string{"AKIA", "ASIA", "ABIA", "ACCA"}},
		{"bedrock", `ABSK[A-Za-z0-9+/]{109,269}={0,2}`, []string{"ABSK"}},
		{"xai", `xai-[A-Za-z0-9_-]{70,120}`, []string{"xai-"}},
		{"openrouter", `sk-or-v1-[0-9a-f]{64}`, []string{"sk-or-v1-"}},
		{"perplexity", `pplx-[A-Za-z0-9]{48}`, []string{"pplx-"}},
		{"replicate", `r8_[A-Za-z0-9]{37}`, []string{"r8_"}},
		{"together", `tgp_v1_[A-Za-z0-9_-]{43}`, []string{"tgp_v1_"}},
		{"cerebras", `csk-[A-Za-z0-9]{48}`, []string{"csk-"}},
		{"elevenlabs", `sk_[0-9a-f]{48}`, []string{"sk_"}},
	}
	out := make([]Pattern, len(shapes))
	for i, s := range shapes {
		out[i] = Pattern{Provider: s.provider,
			re: regexp.MustCompile(`(?:^|[^A-Za-z0-9_-])(` + s.re + `)(?:$|[^A-Za-z0-9_-])`)}
		for _, p := range s.prefixes {
			out[i].prefixes = append(out[i].prefixes, []byte(p))
		}
	}
	return out
}()

// mayMatch reports whether text holds one of p's prefixes.
func (p Pattern) mayMatch(text []byte) bool {
	for _, pre := range p.prefixes {
		if bytes.Contains(text, pre) {
			return true
		}
	}
	return false
}

// Fingerprint is one keyvault entry: HMAC-SHA256 of a key value of Length bytes.
type Fingerprint struct {
	Name     string `json:"name"`
	Provider string `json:"provider"`
	Version  int    `json:"version"`
	Length   int    `json:"length"`
	HMAC     string `json:"hmac"`
}

// Fingerprints is the set of keyvault fingerprints, safe for concurrent use.
type Fingerprints struct {
	mu      sync.RWMutex
	key     []byte
	entries map[string]Fingerprint // by HMAC
	lengths map[int]int            // length -> entry count
}

// NewFingerprints returns an empty set keyed by the HMAC key.
func NewFingerprints(key []byte) *Fingerprints {
	return &Fingerprints{key: bytes.Clone(key), entries: map[string]Fingerprint{}, lengths: map[int]int{}}
}

// Put adds or replaces an entry under id (the KV key).
func (f *Fingerprints) Put(fp Fingerprint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.entries[fp.HMAC]; !ok {
		f.lengths[fp.Length]++
	}
	f.entries[fp.HMAC] = fp
}

// Delete removes the entry with the given HMAC.
func (f *Fingerprints) Delete(hmacHex string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fp, ok := f.entries[hmacHex]; ok {
		delete(f.entries, hmacHex)
		if f.lengths[fp.Length]--; f.lengths[fp.Length] == 0 {
			delete(f.lengths, fp.Length)
		}
	}
}

// Finding is one secret found in output. It never holds the secret.
type Finding struct {
	// Kind is "pattern" or "fingerprint". Encoding is "plain", "base64",
	// "url", "reversed" or "hex".
	Kind     string `json:"kind"`
	Provider string `json:"provider"`
	// KeyName is the keyvault key name for a fingerprint match.
	KeyName  string `json:"key_name,omitempty"`
	Encoding string `json:"encoding"`
}

type span struct{ start, end int }

// Redact returns out with every secret replaced by [Redacted], and what it
// found. fps may be nil.
func Redact(out []byte, fps *Fingerprints) ([]byte, []Finding) {
	spans, found := matchPatterns(out, "plain")
	if fps != nil {
		s, f := fps.match(out)
		spans, found = append(spans, s...), append(found, f...)
	}
	s, f := matchReversed(out, fps)
	spans, found = append(spans, s...), append(found, f...)
	s, f, dumpHex := matchDumps(out, fps)
	spans, found = append(spans, s...), append(found, f...)
	s, f = matchHex(out, fps, dumpHex)
	spans, found = append(spans, s...), append(found, f...)
	if len(spans) == 0 {
		return out, nil
	}
	return replaceSpans(out, spans), found
}

// matchPatterns finds the provider key shapes in text.
func matchPatterns(text []byte, encoding string) ([]span, []Finding) {
	var spans []span
	var found []Finding
	for _, p := range patterns {
		if !p.mayMatch(text) {
			continue
		}
		for _, m := range p.re.FindAllSubmatchIndex(text, -1) {
			spans = append(spans, span{m[2], m[3]})
			found = append(found, Finding{Kind: "pattern", Provider: p.Provider, Encoding: encoding})
		}
	}
	return spans, found
}

// matchReversed finds key shapes and fingerprinted values written backwards,
// as print(key[::-1]) writes them, and returns their spans in out.
func matchReversed(out []byte, fps *Fingerprints) ([]span, []Finding) {
	rev := make([]byte, len(out))
	for i, c := range out {
		rev[len(out)-1-i] = c
	}
	spans, found := matchPatterns(rev, "reversed")
	if fps != nil {
		s, f := fps.matchPlainLocked(rev, "reversed", func(s span) span { return s })
		spans, found = append(spans, s...), append(found, f...)
	}
	for i, s := range spans {
		spans[i] = span{len(out) - s.end, len(out) - s.start}
	}
	return spans, found
}

// minHexRun is the fewest hex digits decoded: 8 bytes, shorter than any
// provider key.
const minHexRun = 16

// matchHex finds keys written in hex and redacts the whole hex run that
// holds one. A run is an unbroken string of hex digits, or groups of one even
// width split by separators or written as \x or 0x escapes (see hexRuns).
// Each run is decoded as written (at both byte alignments when it is one
// unbroken string) and with its digits in reverse order, which is how the
// hex of a key reads backwards. The first decoding is also checked reversed,
// which finds the hex of a reversed key. All decodings go into one buffer,
// separated by a newline that no key contains, so each check is one pass
// over it, and the buffer has about twice as many bytes as the runs have
// digits.
func matchHex(out []byte, fps *Fingerprints, skip []span) ([]span, []Finding) {
	runs := hexRuns(out, skip)
	if len(runs) == 0 {
		return nil, nil
	}
	var decoded []byte
	var pieces []hexPiece
	add := func(run span, digits []byte) {
		at := len(decoded)
		decoded = append(decoded, make([]byte, len(digits)/2)...)
		if _, err := hex.Decode(decoded[at:], digits[:len(digits)/2*2]); err != nil {
			decoded = decoded[:at]
			return
		}
		pieces = append(pieces, hexPiece{run: run, start: at, end: len(decoded)})
		decoded = append(decoded, '\n')
	}
	for _, r := range runs {
		for shift := 0; shift < r.shifts; shift++ {
			add(r.span, r.digits[shift:])
		}
	}
	// Forward decodings end here. Reversing this part turns the hex of a
	// reversed key into the key.
	forwardEnd := len(decoded)
	var backwards []byte
	for _, r := range runs {
		backwards = append(backwards[:0], r.digits...)
		slices.Reverse(backwards)
		for shift := 0; shift < r.shifts; shift++ {
			add(r.span, backwards[shift:])
		}
	}
	if len(pieces) == 0 {
		return nil, nil
	}
	hits, found := matchDecodedHex(decoded, forwardEnd, fps)
	var hitRuns []span
	for _, hit := range hits {
		// Map each hit back to the hex run it came from.
		i := sort.Search(len(pieces), func(i int) bool { return pieces[i].end > hit.start })
		if i < len(pieces) {
			hitRuns = append(hitRuns, pieces[i].run)
		}
	}
	return hitRuns, found
}

// matchDecodedHex runs the key checks over decoded, and over its first
// forwardEnd bytes reversed. It returns each hit's span in decoded.
func matchDecodedHex(decoded []byte, forwardEnd int, fps *Fingerprints) ([]span, []Finding) {
	reversed := slices.Clone(decoded[:forwardEnd])
	slices.Reverse(reversed)

	var hits []span
	var found []Finding
	for _, text := range []struct {
		buf []byte
		// at maps a hit in buf to its span in decoded.
		at func(hit span) span
	}{
		{decoded, func(hit span) span { return hit }},
		{reversed, func(hit span) span { return span{forwardEnd - hit.end, forwardEnd - hit.start} }},
	} {
		spans, fnd := matchPatterns(text.buf, "hex")
		if fps != nil {
			s, f := fps.matchPlainLocked(text.buf, "hex", func(s span) span { return s })
			spans, fnd = append(spans, s...), append(fnd, f...)
		}
		found = append(found, fnd...)
		for _, hit := range spans {
			hits = append(hits, text.at(hit))
		}
	}
	return hits, found
}

// hexPiece is one decoded hex run: run in the output, [start, end) in the
// decoded buffer.
type hexPiece struct {
	run        span
	start, end int
}

// hexRun is a run of hex in the output: its span, its digits without
// separators and escape prefixes, and the byte alignments to decode. One
// unbroken string of digits gets both alignments, because its first digit
// may belong to the text before it, and a run of groups gets one.
type hexRun struct {
	span
	digits []byte
	shifts int
}

// maxHexSeparator is the longest separator between two groups of a run:
// xxd, hexdump -C and od put one or two spaces, a colon and a space, or a
// line break and a space between groups. maxCArraySeparator is the longest
// between two 0x groups, which may end a line of a C array and be indented
// on the next (",\n  " in xxd -i).
const (
	maxHexSeparator    = 2
	maxCArraySeparator = 8
)

// hexRuns returns the runs of at least minHexRun hex digits in out. A run is
// one unbroken string of hex digits, or a list of groups. The groups all have
// the same even number of digits, except that the last may be shorter, as at
// the end of an xxd dump. Up to maxHexSeparator spaces, tabs, colons, commas
// or line breaks set them apart ("7368 2d70", "73:68:2d:70", xxd -p lines),
// or each has a \x or 0x prefix ("\x73\x68", "0x73, 0x68", and C arrays
// as xxd -i writes them). A group of another width, such as the offset of
// a dump line, starts a new run. Runs stay out of the spans in skip (sorted,
// not overlapping), where matchDumps reads the hex. The scan is one pass
// over out.
func hexRuns(out []byte, skip []span) []hexRun {
	var runs []hexRun
	// digits holds the digits of every run, one after another, so that the
	// runs share one allocation. A run's own digits start at first.
	var digits []byte
	var firsts []int
	i := 0
	for i < len(out) {
		for len(skip) > 0 && skip[0].end <= i {
			skip = skip[1:]
		}
		// limit is where the run must end, at the next skipped span.
		limit := len(out)
		if len(skip) > 0 {
			if skip[0].start <= i {
				i = skip[0].end
				continue
			}
			limit = skip[0].start
		}
		g, ok := hexGroupAt(out, i)
		if !ok || g.digits.end > limit {
			i++
			continue
		}
		first := len(digits)
		digits = append(digits, out[g.digits.start:g.digits.end]...)
		run := hexRun{span: span{i, g.digits.end}, shifts: 2}
		width := g.digits.end - g.digits.start
		next := g.digits.end
		for width%2 == 0 {
			at, ok := nextHexGroup(out, next, g.prefix)
			if !ok {
				break
			}
			h, ok := hexGroupAt(out, at)
			w := h.digits.end - h.digits.start
			if !ok || h.prefix != g.prefix || w > width || w%2 != 0 || h.digits.end > limit {
				break
			}
			digits = append(digits, out[h.digits.start:h.digits.end]...)
			run.end, run.shifts = h.digits.end, 1
			next = h.digits.end
			if w < width {
				break
			}
		}
		if len(digits)-first >= minHexRun {
			runs = append(runs, run)
			firsts = append(firsts, first)
		} else {
			digits = digits[:first]
		}
		i = run.end
	}
	for k := range runs {
		end := len(digits)
		if k+1 < len(runs) {
			end = firsts[k+1]
		}
		runs[k].digits = digits[firsts[k]:end]
	}
	return runs
}

// hexGroup is one group of hex digits at a position of the output: the
// digits' span and the escape prefix before them ("", `\x` or "0x").
type hexGroup struct {
	digits span
	prefix string
}

// hexGroupAt returns the group of hex digits that starts at i, after an
// escape prefix if there is one.
func hexGroupAt(out []byte, i int) (hexGroup, bool) {
	g := hexGroup{}
	if i+2 < len(out) && isHexByte(out[i+2]) {
		switch {
		case out[i] == '\\' && out[i+1] == 'x':
			g.prefix = `\x`
		case out[i] == '0' && (out[i+1] == 'x' || out[i+1] == 'X'):
			g.prefix = "0x"
		}
	}
	start := i + len(g.prefix)
	end := start
	for end < len(out) && isHexByte(out[end]) {
		end++
	}
	g.digits = span{start, end}
	return g, end > start
}

// nextHexGroup returns where the group after the one ending at end starts:
// right there for a \x escape, else after 1 to maxHexSeparator separators
// (maxCArraySeparator after a 0x group).
func nextHexGroup(out []byte, end int, prefix string) (int, bool) {
	if prefix == `\x` {
		return end, end < len(out) && out[end] == '\\'
	}
	maxSep := maxHexSeparator
	if prefix == "0x" {
		maxSep = maxCArraySeparator
	}
	n := 0
	for end+n < len(out) && n <= maxSep && isHexSeparator(out[end+n]) {
		n++
	}
	return end + n, n >= 1 && n <= maxSep
}

func isHexSeparator(c byte) bool {
	return c == ' ' || c == '\t' || c == ':' || c == ',' || c == '\n' || c == '\r'
}

func isHexByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func replaceSpans(out []byte, spans []span) []byte {
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	var b bytes.Buffer
	last := 0
	for _, s := range spans {
		if s.start < last {
			s.start = last // overlapping matches
		}
		if s.end <= last {
			continue
		}
		b.Write(out[last:s.start])
		b.WriteString(Redacted)
		last = s.end
	}
	b.Write(out[last:])
	return b.Bytes()
}

func isKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func isBase64Byte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' ||
		c == '/' || c == '=' || c == '_' || c == '-'
}

// match finds fingerprinted values in plain form (every window of each
// fingerprint length inside a run of key characters), inside base64 runs, and
// in the URL-decoded output.
func (f *Fingerprints) match(out []byte) ([]span, []Finding) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(f.entries) == 0 {
		return nil, nil
	}
	spans, found := f.matchPlain(out, "plain", func(s span) span { return s })
	for _, run := range runs(out, isBase64Byte) {
		decoded := decodeBase64(out[run.start:run.end])
		if decoded == nil {
			continue
		}
		if _, fnd := f.matchPlain(decoded, "base64", nil); len(fnd) > 0 {
			spans = append(spans, run)
			found = append(found, fnd...)
		}
	}
	if bytes.IndexByte(out, '%') >= 0 {
		if dec, err := url.QueryUnescape(string(out)); err == nil {
			if _, fnd := f.matchPlain([]byte(dec), "url", nil); len(fnd) > 0 {
				// The encoded form's position is not tracked: redact every
				// percent-encoded run.
				spans = append(spans, runs(out, func(c byte) bool { return isKeyByte(c) || c == '%' })...)
				found = append(found, fnd...)
			}
		}
	}
	return spans, found
}

// matchPlainLocked is matchPlain for a caller that does not hold f.mu.
func (f *Fingerprints) matchPlainLocked(text []byte, encoding string, keep func(span) span,
) ([]span, []Finding) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(f.entries) == 0 {
		return nil, nil
	}
	return f.matchPlain(text, encoding, keep)
}

func (f *Fingerprints) matchPlain(text []byte, encoding string, keep func(span) span) ([]span, []Finding) {
	var spans []span
	var found []Finding
	mac := hmac.New(sha256.New, f.key)
	sum := make([]byte, 0, sha256.Size)
	for _, run := range runs(text, isKeyByte) {
		for length := range f.lengths {
			for i := run.start; i+length <= run.end; i++ {
				mac.Reset()
				mac.Write(text[i : i+length])
				sum = mac.Sum(sum[:0])
				fp, ok := f.entries[hex.EncodeToString(sum)]
				if !ok {
					continue
				}
				found = append(found, Finding{Kind: "fingerprint", Provider: fp.Provider,
					KeyName: fp.Name, Encoding: encoding})
				if keep != nil {
					spans = append(spans, keep(span{i, i + length}))
				}
			}
		}
	}
	return spans, found
}

func runs(text []byte, in func(byte) bool) []span {
	var out []span
	start := -1
	for i := 0; i <= len(text); i++ {
		if i < len(text) && in(text[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start >= 8 {
			out = append(out, span{start, i})
		}
		start = -1
	}
	return out
}

func decodeBase64(b []byte) []byte {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding,
		base64.URLEncoding, base64.RawURLEncoding} {
		if d, err := enc.DecodeString(string(b)); err == nil {
			return d
		}
	}
	return nil
}
