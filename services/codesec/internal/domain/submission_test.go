package domain

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/libs/bundle"
)

func validSubmission() Submission {
	return Submission{
		Language:   LangPython,
		Files:      []SourceFile{{Name: "main.py", Content: "print('hi')\n"}},
		Entrypoint: "main.py",
		Modules:    []string{"json"},
		Args:       []string{"--n", "3"},
		Stdin:      "input\n",
		Limits:     bundle.Limits{WallTimeMillis: 1000},
	}
}

func TestValidateAcceptsValid(t *testing.T) {
	t.Parallel()
	s := validSubmission()
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

// TestValidateErrors checks each validation error: the field it names, its
// kind, and that the message contains the offending value.
func TestValidateErrors(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("a", MaxFileBytes+1)
	tests := []struct {
		name      string
		change    func(*Submission)
		field     string
		kind      string
		mentioned string
	}{
		{"unsupported language", func(s *Submission) { s.Language = "ruby" },
			"language", ProblemUnsupported, `"ruby"`},
		{"no files", func(s *Submission) { s.Files = nil }, "files", ProblemInvalid, "no files"},
		{"too many files", func(s *Submission) {
			for i := range MaxFiles {
				s.Files = append(s.Files, SourceFile{Name: strings.Repeat("f", i+1) + ".py"})
			}
		}, "files", ProblemTooLarge, "65 files"},
		{"dot-dot name", func(s *Submission) { s.Files[0].Name = "../evil.py" },
			"files[0].name", ProblemInvalid, `"../evil.py"`},
		{"absolute name", func(s *Submission) { s.Files[0].Name = "/etc/passwd" },
			"files[0].name", ProblemInvalid, `"/etc/passwd"`},
		{"control character name", func(s *Submission) { s.Files[0].Name = "a\x1bb.py" },
			"files[0].name", ProblemInvalid, `"a\x1bb.py"`},
		{"empty name", func(s *Submission) { s.Files[0].Name = "" },
			"files[0].name", ProblemInvalid, "empty"},
		{"duplicate name", func(s *Submission) {
			s.Files = append(s.Files, SourceFile{Name: "main.py"})
		}, "files[1].name", ProblemInvalid, `"main.py"`},
		{"file too large", func(s *Submission) { s.Files[0].Content = big },
			"files[0].content", ProblemTooLarge, "262145 bytes"},
		{"total too large", func(s *Submission) {
			s.Files = nil
			for i := range 3 {
				s.Files = append(s.Files, SourceFile{Name: strings.Repeat("m", i+1) + ".py",
					Content: strings.Repeat("x", MaxFileBytes)})
			}
			s.Entrypoint = "m.py"
		}, "files", ProblemTooLarge, "786432 bytes"},
		{"invalid UTF-8", func(s *Submission) { s.Files[0].Content = "print('\xff')" },
			"files[0].content", ProblemInvalid, `"main.py" is not valid UTF-8`},
		{"NUL byte", func(s *Submission) { s.Files[0].Content = "a\nb\x00" },
			"files[0].content", ProblemInvalid, "line 2"},
		{"missing entrypoint", func(s *Submission) { s.Entrypoint = "run.py" },
			"entrypoint", ProblemInvalid, `"run.py"`},
		{"bad module", func(s *Submission) { s.Modules = []string{"os;rm"} },
			"modules[0]", ProblemInvalid, `"os;rm"`},
		{"dot-dot module", func(s *Submission) { s.Modules = []string{"a..b"} },
			"modules[0]", ProblemInvalid, `"a..b"`},
		{"NUL in argument", func(s *Submission) { s.Args = []string{"a\x00"} },
			"args[0]", ProblemInvalid, `"a\x00"`},
		{"stdin too large", func(s *Submission) { s.Stdin = strings.Repeat("i", MaxStdinBytes+1) },
			"stdin", ProblemTooLarge, "131073 bytes"},
		{"negative limit", func(s *Submission) { s.Limits.MemoryBytes = -1 },
			"limits.memory_bytes", ProblemInvalid, "-1"},
		{"limit too high", func(s *Submission) { s.Limits.MaxProcesses = 10000 },
			"limits.max_processes", ProblemInvalid, "10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := validSubmission()
			tt.change(&s)
			var ve *ValidationError
			if err := s.Validate(); !errors.As(err, &ve) {
				t.Fatalf("Validate error = %v, want a *ValidationError", err)
			}
			if ve.Field != tt.field {
				t.Errorf("field = %q, want %q", ve.Field, tt.field)
			}
			if ve.Kind != tt.kind {
				t.Errorf("kind = %q, want %q", ve.Kind, tt.kind)
			}
			if !strings.Contains(ve.Message, tt.mentioned) {
				t.Errorf("message %q does not mention %s", ve.Message, tt.mentioned)
			}
		})
	}
}

func TestParseSubmissionStrict(t *testing.T) {
	t.Parallel()
	valid, err := json.Marshal(validSubmission())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseSubmission(valid); err != nil {
		t.Fatalf("ParseSubmission of a valid body: %v", err)
	}

	bad := map[string]string{
		"unknown field":  `{"language":"python","files":[],"entrypoint":"a","shell":true}`,
		"trailing data":  string(valid) + `{}`,
		"not an object":  `[1]`,
		"oversized body": `"` + strings.Repeat("a", MaxRequestBytes) + `"`,
	}
	for name, body := range bad {
		var ve *ValidationError
		if _, err := ParseSubmission([]byte(body)); !errors.As(err, &ve) || ve.Field != "body" {
			t.Errorf("%s: error = %v, want a body ValidationError", name, err)
		}
	}
}

func TestQuoteShortens(t *testing.T) {
	t.Parallel()
	got := Quote(strings.Repeat("é", 100))
	if len(got) > 100 {
		t.Errorf("Quote returned %d bytes, want at most 100", len(got))
	}
	if !strings.Contains(got, "(200 bytes)") {
		t.Errorf("Quote(%d bytes) = %s, want the original length", 200, got)
	}
}
