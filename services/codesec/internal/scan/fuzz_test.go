package scan

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodexsec/nodex/libs/bundle"
)

// FuzzScan runs arbitrary source through every language's analysis, seeded
// with the rule samples from testdata. Hostile code reaches the scanner before anything
// else, so it must never panic and must respect the findings cap.
func FuzzScan(f *testing.F) {
	s, err := NewDefault()
	if err != nil {
		f.Fatal(err)
	}
	for _, lang := range []string{"python", "javascript", "sh"} {
		data, err := os.ReadFile(filepath.Join("testdata", "samples", lang+".json"))
		if err != nil {
			f.Fatal(err)
		}
		var all map[string]samples
		if err := json.Unmarshal(data, &all); err != nil {
			f.Fatal(err)
		}
		for _, sm := range all {
			for _, src := range append(sm.Positive, sm.Negative...) {
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
