package bundle

import (
	"bytes"
	"context"
	"testing"
)

// program2KiB returns a 2 KiB Python program, the size used across the
// codesec benchmarks.
func program2KiB() []byte {
	line := []byte("total = sum(i * i for i in range(100))  # filler line\n")
	return bytes.Repeat(line, 2048/len(line)+1)[:2048]
}

func BenchmarkSeal2KiB(b *testing.B) {
	f := newFixture(b)
	m := testManifest("b-bench")
	contents := Contents{Files: []File{{Name: "main.py", Data: program2KiB()}}}
	pub := f.recipient.PublicKey()
	b.ReportAllocs()

	for b.Loop() {
		if _, _, err := Seal(m, contents, f.signer, pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyOpen2KiB(b *testing.B) {
	f := newFixture(b)
	contents := Contents{Files: []File{{Name: "main.py", Data: program2KiB()}}}
	sealed, _, err := Seal(testManifest("b-bench"), contents, f.signer, f.recipient.PublicKey())
	if err != nil {
		b.Fatal(err)
	}
	wire := sealed.Marshal()
	opts := f.options()
	b.ReportAllocs()

	for b.Loop() {
		parsed, err := Parse(wire)
		if err != nil {
			b.Fatal(err)
		}
		v, err := Verify(context.Background(), parsed, opts)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Open(v, f.recipient); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParseVerify feeds arbitrary bytes to the runner's side of the format:
// nothing may panic, and nothing but the sealed seed may verify.
func FuzzParseVerify(f *testing.F) {
	fx := newFixture(f)
	wire := fx.seal(f, testManifest("b-fuzz")).Marshal()
	f.Add(wire)
	f.Add(wire[:len(wire)/2])
	f.Add([]byte("NXB1"))

	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		v, err := Verify(context.Background(), b, fx.options())
		if err != nil {
			return
		}
		if !bytes.Equal(data, wire) {
			t.Fatalf("bytes other than the sealed bundle verified: %x", data)
		}
		if _, err := Open(v, fx.recipient); err != nil {
			t.Fatalf("Open of the sealed bundle: %v", err)
		}
	})
}

func FuzzDecodeFiles(f *testing.F) {
	archive, err := EncodeFiles(testContents().Files)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(archive)
	f.Add([]byte("NXA1\x00\x00\x00\x01\x00\x02..\x00\x00\x00\x00"))

	f.Fuzz(func(t *testing.T, data []byte) {
		files, err := DecodeFiles(data)
		if err != nil {
			return
		}
		for _, file := range files {
			if err := CheckFileName(file.Name); err != nil {
				t.Fatalf("decoded unsafe name %q: %v", file.Name, err)
			}
		}
		again, err := EncodeFiles(files)
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("archive does not re-encode to the same bytes: %v", err)
		}
	})
}
