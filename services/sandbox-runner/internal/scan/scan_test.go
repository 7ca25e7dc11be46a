package scan

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
)

// Fake keys with the right shape; the bodies are visibly not real.
var (
	fakeAnthropic = "sk-ant-api03-" + strings.Repeat("FAKEfake0", 11)[:93] + "AA"
	fakeOpenAI    = "sk-proj-" + strings.Repeat("FAKE", 19)[:74] + "T3BlbkFJ" + strings.Repeat("fake", 19)[:74]
	fakeAWS       = "AKIA" + "FAKEFAKEFAKE2345"
	fakeMistral   = "FAKEmistralFAKEmistralFAKE123456" // no prefix: only a fingerprint finds it
)

func TestRedactProviderPatterns(t *testing.T) {
	for _, key := range []string{fakeAnthropic, fakeOpenAI, fakeAWS} {
		out, found := Redact([]byte("token="+key+"\n"), nil)
		if strings.Contains(string(out), key) {
			t.Errorf("key %s… not redacted: %q", key[:8], out)
		}
		if len(found) != 1 || found[0].Kind != "pattern" {
			t.Errorf("key %s…: got findings %+v, want one pattern", key[:8], found)
		}
	}
}

func TestRedactLeavesOrdinaryText(t *testing.T) {
	in := "sum = 4950\nAKIA is a prefix\n"
	out, found := Redact([]byte(in), nil)
	if string(out) != in || len(found) != 0 {
		t.Errorf("got %q %+v, want the text unchanged", out, found)
	}
}

func fingerprintsFor(t *testing.T, value string) *Fingerprints {
	t.Helper()
	key := []byte("0123456789abcdef0123456789abcdef")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(value))
	fps := NewFingerprints(key)
	fps.Put(Fingerprint{Name: "mistral-main", Provider: "mistral", Version: 1,
		Length: len(value), HMAC: hex.EncodeToString(mac.Sum(nil))})
	return fps
}

func TestRedactFingerprintForms(t *testing.T) {
	fps := fingerprintsFor(t, fakeMistral)
	tests := []struct {
		name, text, encoding string
	}{
		{"plain", "key: " + fakeMistral + "\n", "plain"},
		{"inside a longer token", "x" + fakeMistral + "y", "plain"},
		{"base64", base64.StdEncoding.EncodeToString([]byte("k=" + fakeMistral)), "base64"},
		// A url-safe key is its own URL encoding, so the plain scan finds it too.
		{"url", "q=" + url.QueryEscape("k "+fakeMistral+"&"), "url"},
		{"reversed", "key: " + reverseString(fakeMistral) + "\n", "reversed"},
		{"hex", "key: " + hex.EncodeToString([]byte(fakeMistral)) + "\n", "hex"},
		{"hex at an odd offset", "a" + hex.EncodeToString([]byte(fakeMistral)), "hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, found := Redact([]byte(tt.text), fps)
			if !hasEncoding(found, tt.encoding) {
				t.Fatalf("got findings %+v, want a %s match of mistral-main", found, tt.encoding)
			}
			if strings.Contains(string(out), fakeMistral) {
				t.Errorf("value not redacted: %q", out)
			}
		})
	}
}

func reverseString(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

func TestRedactEncodedProviderPatterns(t *testing.T) {
	for _, key := range []string{fakeAnthropic, fakeOpenAI, fakeAWS} {
		for _, tt := range []struct{ encoding, text string }{
			{"reversed", reverseString(key)},
			{"hex", hex.EncodeToString([]byte(key))},
			{"hex", strings.ToUpper(hex.EncodeToString([]byte("k=" + key)))},
		} {
			out, found := Redact([]byte("out: "+tt.text+"\n"), nil)
			if strings.Contains(string(out), tt.text) {
				t.Errorf("%s key %s… not redacted: %q", tt.encoding, key[:8], out)
			}
			if len(found) != 1 || found[0].Kind != "pattern" || found[0].Encoding != tt.encoding {
				t.Errorf("%s key %s…: got findings %+v, want one %s pattern", tt.encoding, key[:8],
					found, tt.encoding)
			}
		}
	}
}

func hasEncoding(found []Finding, encoding string) bool {
	for _, f := range found {
		if f.Encoding == encoding && f.KeyName == "mistral-main" {
			return true
		}
	}
	return false
}

// FuzzRedact checks that a key set apart by spaces never survives redaction,
// whatever surrounds it, and that Redact never panics.
func FuzzRedact(f *testing.F) {
	f.Add("before", "after")
	f.Add("", "")
	f.Add("sk-ant-api03-", "AA")
	f.Add("%41", "==")
	fps := fingerprintsFor(&testing.T{}, fakeMistral)
	f.Fuzz(func(t *testing.T, prefix, suffix string) {
		for _, key := range []string{fakeAnthropic, fakeAWS, fakeMistral} {
			out, _ := Redact([]byte(prefix+" "+key+" "+suffix), fps)
			if strings.Contains(string(out), key) {
				t.Fatalf("key %s… survived in %q", key[:8], out)
			}
		}
	})
}

// BenchmarkRedact measures Redact on 1 MiB of program-like output, with
// and without a fingerprint set, to show its cost per output size. Every
// line holds a hex run and the prefix "sk-", so the hex decoding and the
// prefixed shapes' regular expressions run.
func BenchmarkRedact(b *testing.B) {
	line := "result 42: value=abcdef0123456789 status ok sk-x " + fakeMistral[:8] + "\n"
	out := []byte(strings.Repeat(line, (1<<20)/len(line)))
	key := []byte("0123456789abcdef0123456789abcdef")
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(fakeMistral))
	fps := NewFingerprints(key)
	fps.Put(Fingerprint{Name: "m", Provider: "mistral", Length: len(fakeMistral),
		HMAC: hex.EncodeToString(mac.Sum(nil))})
	for _, bb := range []struct {
		name string
		fps  *Fingerprints
	}{{"patterns", nil}, {"fingerprints", fps}} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(out)))
			for b.Loop() {
				Redact(out, bb.fps)
			}
		})
	}
}
