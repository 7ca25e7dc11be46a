// Package scan finds and redacts secrets in sandbox output: provider API keys
// by their published shapes, and exact values that keyvault holds, by HMAC
// fingerprints of their plain, base64 and URL-encoded forms. Both are also
// found written backwards or hex-encoded. Every form costs one more pass
// over the output, so the scan stays linear in the output size (times the
// number of distinct fingerprinted key lengths).
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
	s, f = matchHex(out, fps)
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

// minHexRun is the shortest hex run decoded: 8 bytes, shorter than any
// provider key.
const minHexRun = 16

// matchHex decodes every run of hex digits, at both byte alignments, and
// redacts the whole run when the decoded bytes hold a key shape or a
// fingerprinted value. All decodings go into one buffer, separated by a
// newline that no key contains, so each check is one pass over it.
func matchHex(out []byte, fps *Fingerprints) ([]span, []Finding) {
	var decoded []byte
	var pieces []hexPiece
	for _, run := range runs(out, isHexByte) {
		for shift := 0; shift < 2; shift++ {
			start, end := run.start+shift, run.end
			if (end-start)%2 != 0 {
				end--
			}
			if end-start < minHexRun {
				continue
			}
			at := len(decoded)
			decoded = append(decoded, make([]byte, (end-start)/2)...)
			if _, err := hex.Decode(decoded[at:], out[start:end]); err != nil {
				decoded = decoded[:at]
				continue
			}
			pieces = append(pieces, hexPiece{run: run, start: at, end: len(decoded)})
			decoded = append(decoded, '\n')
		}
	}
	if len(pieces) == 0 {
		return nil, nil
	}
	spans, found := matchPatterns(decoded, "hex")
	if fps != nil {
		s, f := fps.matchPlainLocked(decoded, "hex", func(s span) span { return s })
		spans, found = append(spans, s...), append(found, f...)
	}
	// Map each hit in the decoded buffer back to the hex run it came from.
	var hitRuns []span
	for _, hit := range spans {
		i := sort.Search(len(pieces), func(i int) bool { return pieces[i].end > hit.start })
		if i < len(pieces) {
			hitRuns = append(hitRuns, pieces[i].run)
		}
	}
	return hitRuns, found
}

// hexPiece is one decoded hex run: run in the output, [start, end) in the
// decoded buffer.
type hexPiece struct {
	run        span
	start, end int
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
