package scan

import (
	"testing"

	"github.com/nodexsec/nodex/libs/bundle"
)

// FuzzScan runs arbitrary source through every language's analysis, seeded
// with the rule samples. Hostile code reaches the scanner before anything
// else, so it must never panic and must respect the findings cap.
func FuzzScan(f *testing.F) {
	s, err := NewDefault()
	if err != nil {
		f.Fatal(err)
	}
	for _, lang := range []string{"python", "javascript", "sh"} {
		for _, r := range s.Rules(lang).Rules {
			for _, src := range append(r.Samples.Positive, r.Samples.Negative...) {
				f.Add(src)
			}
		}
	}
	f.Add("x = '\\")
	f.Add("`${`${'")
	f.Add("echo \"$(\"")

	f.Fuzz(func(t *testing.T, src string) {
		for _, lang := range []string{"python", "javascript", "sh"} {
			findings, err := s.Scan(lang, []bundle.File{{Name: "f", Data: []byte(src)}})
			if err != nil {
				t.Fatal(err)
			}
			if len(findings) > MaxFindingsPerFile {
				t.Fatalf("%s: %d findings, over the cap", lang, len(findings))
			}
		}
	})
}
