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

// groupHex splits the hex digits h into groups of width digits, each written
// as prefix+group, joined by sep.
func groupHex(h string, width int, prefix, sep string) string {
	var groups []string
	for len(h) > width {
		groups = append(groups, prefix+h[:width])
		h = h[width:]
	}
	return strings.Join(append(groups, prefix+h), sep)
}

// hexdumpHalves writes the hex digits h as hexdump -C does inside a line:
// bytes set apart by one space, and two spaces after every eighth byte.
func hexdumpHalves(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		switch {
		case i > 0 && i%16 == 0:
			b.WriteString("  ")
		case i > 0:
			b.WriteString(" ")
		}
		b.WriteString(h[i:min(i+2, len(h))])
	}
	return b.String()
}

// hexForms returns key written in each hex form that Redact must find,
// by name.
func hexForms(key string) map[string]string {
	h := hex.EncodeToString([]byte(key))
	return map[string]string{
		"xxd groups":          groupHex(h, 4, "", " "),
		"byte groups":         groupHex(h, 2, "", " "),
		"hexdump halves":      hexdumpHalves(h),
		"colons":              groupHex(h, 2, "", ":"),
		"xxd -p lines":        groupHex(h, 60, "", "\n"),
		`\x escapes`:          groupHex(h, 2, `\x`, ""),
		"0x escapes":          groupHex(h, 2, "0x", ", "),
		"upper case groups":   strings.ToUpper(groupHex(h, 2, "", " ")),
		"digits reversed":     reverseString(h),
		"hex of reversed key": hex.EncodeToString([]byte(reverseString(key))),
		"reversed key in groups": groupHex(hex.EncodeToString([]byte(reverseString(key))),
			4, "", " "),
	}
}

func TestRedactHexForms(t *testing.T) {
	fps := fingerprintsFor(t, fakeMistral)
	for _, key := range []string{fakeAnthropic, fakeAWS, fakeMistral} {
		for name, form := range hexForms(key) {
			t.Run(key[:4]+"/"+name, func(t *testing.T) {
				out, found := Redact([]byte("out: "+form+"\n"), fps)
				if len(found) == 0 {
					t.Errorf("no findings in %q", form)
				}
				if got, want := string(out), "out: "+Redacted+"\n"; got != want {
					t.Errorf("got %q, want %q", got, want)
				}
			})
		}
	}
}

// TestRedactLeavesOrdinaryHex checks that hex of anything but a key, in the
// forms that Redact decodes, passes unchanged.
func TestRedactLeavesOrdinaryHex(t *testing.T) {
	fps := fingerprintsFor(t, fakeMistral)
	sum := sha256.Sum256([]byte("hello"))
	text := hex.EncodeToString([]byte("print('hello, world') # an ordinary program line"))
	lines := []string{
		"sha256 " + hex.EncodeToString(sum[:]),
		"reversed sha256 " + reverseString(hex.EncodeToString(sum[:])),
		"commit 37bc91e0a1b2c3d4e5f60718293a4b5c6d7e8f90 (HEAD -> main)",
		"00000000: 7072 696e 7428 2768 656c 6c6f 2c20 776f  print('hello, wo",
		"00000000  70 72 69 6e 74 28 27 68  65 6c 6c 6f 2c 20 77 6f  |print('hello, wo|",
		groupHex(text, 2, `\x`, ""),
		groupHex(text, 2, "0x", ", "),
		groupHex(text, 2, "", ":"),
		groupHex(text, 60, "", "\n"),
		"uuid 550e8400-e29b-41d4-a716-446655440000 mac 00:1a:2b:3c:4d:5e",
		"2026-12-05 01:02:03.456 pid 4242 addr 0x7ffd5a3b2c10 0xdeadbeef",
	}
	in := strings.Join(lines, "\n") + "\n"
	out, found := Redact([]byte(in), fps)
	if len(found) != 0 {
		t.Errorf("got findings %+v, want none", found)
	}
	if string(out) != in {
		t.Errorf("output changed:\n%s\nwant:\n%s", out, in)
	}
}
