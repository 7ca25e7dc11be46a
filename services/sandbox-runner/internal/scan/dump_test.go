package scan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// dumpTool is one way to run a hex dump tool on this machine.
type dumpTool struct {
	args []string
	// offsets reports whether each line starts with an offset without a
	// colon, which the leak check must not read as hex of the data.
	offsets bool
}

// dumpTools are the layouts that Redact reads. od -An leaves out repeated
// lines without saying how many, so TestRedactDumpTools does not give it
// the OpenAI key, whose fake body repeats.
var dumpTools = []dumpTool{
	{args: []string{"xxd"}},
	{args: []string{"xxd", "-g1"}},
	{args: []string{"xxd", "-g4"}},
	{args: []string{"xxd", "-e"}},
	{args: []string{"xxd", "-i"}},
	{args: []string{"xxd", "-p"}},
	{args: []string{"hexdump", "-C"}, offsets: true},
	{args: []string{"hexdump"}, offsets: true},
	{args: []string{"hexdump", "-x"}, offsets: true},
	{args: []string{"od", "-Ax", "-tx1z"}, offsets: true},
	{args: []string{"od", "-tx1"}, offsets: true},
	{args: []string{"od", "-x"}, offsets: true},
	{args: []string{"od", "-An", "-tx1"}},
}

func (d dumpTool) name() string { return strings.Join(d.args, " ") }

// run dumps data with the tool. A missing tool fails the test: the dump
// tests are the only check of real dump layouts.
func (d dumpTool) run(t *testing.T, data []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath(d.args[0]); err != nil {
		t.Fatalf("%s is not installed: %v", d.args[0], err)
	}
	// The file is named by a relative path, because xxd -i names its
	// array after it, and the test's folder name holds the provider's.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(d.args[0], append(d.args[1:], "data")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", d.name(), err)
	}
	return out
}

// leakedHex returns a two-byte window of key that out still shows as hex,
// in the order written or as a little-endian word, or "" if none. Offsets
// are left out, and the bytes around the key in the dumped data must share
// no byte with it.
func (d dumpTool) leakedHex(out []byte, key string) string {
	for _, line := range strings.Split(string(out), "\n") {
		var digits strings.Builder
		for i, field := range strings.Fields(strings.ReplaceAll(line, ",", " ")) {
			if strings.HasSuffix(field, ":") || i == 0 && d.offsets && !strings.HasPrefix(line, " ") {
				continue
			}
			field = strings.TrimPrefix(field, "0x")
			if _, err := hex.DecodeString(strings.Repeat("0", len(field)%2) + field); err == nil {
				digits.WriteString(strings.ToLower(field))
			}
		}
		for i := 0; i+2 <= len(key); i++ {
			for _, w := range []string{key[i : i+2], string([]byte{key[i+1], key[i]})} {
				if strings.Contains(digits.String(), hex.EncodeToString([]byte(w))) {
					return fmt.Sprintf("%q in line %q", w, line)
				}
			}
		}
	}
	return ""
}

// leakedText returns a three-character piece of key that out still shows,
// or "" if none. Pieces made only of hex digits are left out, because the
// hex columns show them by chance.
func leakedText(out []byte, key string) string {
	for i := 0; i+3 <= len(key); i++ {
		piece := key[i : i+3]
		if _, err := hex.DecodeString("0" + piece); err == nil {
			continue
		}
		if bytes.Contains(out, []byte(piece)) {
			return piece
		}
	}
	return ""
}

// dumpKeys are keys longer than one dump line, with the finding each
// gives.
var dumpKeys = []struct {
	key            string
	kind, provider string
}{
	{fakeAnthropic, "pattern", "anthropic"},
	{fakeOpenAI, "pattern", "openai"},
	{fakeAWS, "pattern", "aws"},
	{fakeMistral, "fingerprint", "mistral"},
}

func TestRedactDumpTools(t *testing.T) {
	fps := fingerprintsFor(t, fakeMistral)
	for _, tool := range dumpTools {
		for _, k := range dumpKeys {
			for _, form := range []struct{ name, key string }{
				{"key", k.key},
				{"reversed key", reverseString(k.key)},
			} {
				if tool.name() == "od -An -tx1" && k.provider == "openai" {
					continue
				}
				t.Run(tool.name()+"/"+k.provider+"/"+form.name, func(t *testing.T) {
					// Q, = and the line break occur in no key, and the key
					// starts inside a dump line.
					dump := tool.run(t, []byte("QQQQQQQQQ="+form.key+"\nQQQ\n"))
					out, found := Redact(dump, fps)
					if len(found) != 1 {
						t.Fatalf("got findings %+v, want one\n%s", found, out)
					}
					f := found[0]
					if f.Kind != k.kind || f.Provider != k.provider || f.Encoding != "hex" {
						t.Errorf("got finding %+v, want a hex %s of %s", f, k.kind, k.provider)
					}
					if leak := tool.leakedHex(out, form.key); leak != "" {
						t.Errorf("hex of the key left: %s\n%s", leak, out)
					}
					if leak := leakedText(out, form.key); leak != "" {
						t.Errorf("text of the key left: %q\n%s", leak, out)
					}
				})
			}
		}
	}
}

// TestRedactDumpLayout checks that a key is redacted in every group and
// ASCII column piece that shows one of its bytes, and nothing else.
func TestRedactDumpLayout(t *testing.T) {
	data := []byte("QQQQQQQQQ=" + fakeAWS + "\nQQQ\n")
	tests := []struct {
		tool dumpTool
		want string
	}{
		{dumpTool{args: []string{"xxd"}}, `
00000000: 5151 5151 5151 5151 513d [REDACTED]  QQQQQQQQQ=[REDACTED]
00000010: [REDACTED] 0a51  [REDACTED].Q
00000020: 5151 0a                                  QQ.
`},
		{dumpTool{args: []string{"hexdump", "-C"}}, `
00000000  51 51 51 51 51 51 51 51  51 3d [REDACTED]  |QQQQQQQQQ=[REDACTED]|
00000010  [REDACTED] 0a 51  |[REDACTED].Q|
00000020  51 51 0a                                          |QQ.|
00000023
`},
		{dumpTool{args: []string{"od", "-Ax", "-tx1z"}}, `
000000 51 51 51 51 51 51 51 51 51 3d [REDACTED]  >QQQQQQQQQ=[REDACTED]<
000010 [REDACTED] 0a 51  >[REDACTED].Q<
000020 51 51 0a                                         >QQ.<
000023
`},
		// 16-bit words: "3d51" holds '=' and the first Q.
		{dumpTool{args: []string{"hexdump"}}, `
0000000 5151 5151 5151 5151 3d51 [REDACTED]
0000010 [REDACTED] 510a
0000020 5151 000a                              
0000023
`},
	}
	for _, tt := range tests {
		t.Run(tt.tool.name(), func(t *testing.T) {
			out, found := Redact(tt.tool.run(t, data), nil)
			if len(found) != 1 {
				t.Errorf("got findings %+v, want one", found)
			}
			if got, want := string(out), tt.want[1:]; got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// ordinaryText returns about n bytes of program output: log lines, hashes
// and numbers.
func ordinaryText(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		sum := sha256.Sum256([]byte{byte(i)})
		fmt.Fprintf(&b, "step %d: fetched 0x%x bytes, sha256 %x, status ok\n", i, i*4096, sum[:8])
	}
	return b.Bytes()
}

// randomBytes returns n bytes of fixed pseudo-random binary data.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(b)
	return b
}

// TestRedactDumpKeepsOtherLines checks that dumps of several KB of text and
// binary data pass unchanged, and that a key among them changes only the
// lines that show its bytes.
func TestRedactDumpKeepsOtherLines(t *testing.T) {
	fps := fingerprintsFor(t, fakeMistral)
	text, binary := ordinaryText(6000), randomBytes(6000)
	for _, tool := range dumpTools {
		t.Run(tool.name(), func(t *testing.T) {
			for name, data := range map[string][]byte{"text": text, "binary": binary} {
				dump := tool.run(t, data)
				out, found := Redact(dump, fps)
				if len(found) != 0 {
					t.Errorf("%s: got findings %+v, want none", name, found)
				}
				if !bytes.Equal(out, dump) {
					t.Errorf("%s: dump changed", name)
				}
			}

			data := slices.Concat(text, []byte("token="+fakeAnthropic+"\n"), binary)
			dump := tool.run(t, data)
			out, found := Redact(dump, fps)
			if len(found) != 1 || found[0].Provider != "anthropic" {
				t.Errorf("got findings %+v, want one of anthropic", found)
			}
			// The hex check of TestRedactDumpTools needs data that shares no
			// byte with the key, so only the text is checked here.
			if leak := leakedText(out, fakeAnthropic); leak != "" {
				t.Errorf("text of the key left: %q", leak)
			}
			if !tool.offsets && tool.args[0] != "xxd" || slices.Contains(tool.args, "-i") ||
				slices.Contains(tool.args, "-p") {
				return // hexRuns redacts these layouts as one run
			}
			before, after := strings.Split(string(dump), "\n"), strings.Split(string(out), "\n")
			if len(before) != len(after) {
				t.Fatalf("got %d lines, want %d", len(after), len(before))
			}
			var changed []int
			for i := range before {
				if before[i] != after[i] {
					changed = append(changed, i)
				}
			}
			// 108 bytes at 16 bytes a line touch at most 8 lines.
			if len(changed) == 0 || len(changed) > 8 || changed[len(changed)-1]-changed[0] != len(changed)-1 {
				t.Errorf("changed lines %v, want up to 8 in a row", changed)
			}
		})
	}
}

// BenchmarkRedactDump measures Redact on 1 MiB of xxd output of random
// data, the most work the dump step does per byte: every line is a dump
// line and the whole dump is decoded and checked.
func BenchmarkRedactDump(b *testing.B) {
	if _, err := exec.LookPath("xxd"); err != nil {
		b.Fatalf("xxd is not installed: %v", err)
	}
	cmd := exec.Command("xxd")
	cmd.Stdin = bytes.NewReader(randomBytes((1 << 20) * 16 / 68))
	out, err := cmd.Output()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(out)))
	for b.Loop() {
		Redact(out, nil)
	}
}
