// Package scan finds risky constructs in submitted code with rules written
// as data, one rule file per language.
//
// Python and JavaScript are tokenized, not matched as text. Names are
// resolved through imports, aliases, getattr with constant names and
// subscripts. Constant strings are folded through concatenation, chr,
// reversal, join and base64 or hex decoding. Strings passed to eval or
// exec, and base64 or hex blobs that decode to text, are scanned again as
// code.
// Shell scripts are split into words and command positions. The scan is
// defence in depth: the sandbox, not the scan, contains what slips through.
package scan

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nodexsec/nodex/libs/bundle"
	"github.com/nodexsec/nodex/services/codesec/rules"
)

// Limits that bound the work hostile input can cause.
const (
	// MaxFindingsPerFile caps the findings kept per file; a file over the
	// cap still gets its first MaxFindingsPerFile findings.
	MaxFindingsPerFile = 64
	// maxNesting bounds how deep strings decoded or passed to code sinks
	// are scanned again.
	maxNesting = 3
	// minBlobLength is the shortest base64 or hex string decoded and
	// scanned as code.
	minBlobLength = 16
)

// Scanner applies the rule sets. It is safe for concurrent use.
type Scanner struct {
	sets map[string]*RuleFile
}

// New returns a scanner over the given rule sets, keyed by language.
func New(sets map[string]*RuleFile) *Scanner {
	return &Scanner{sets: sets}
}

// NewDefault returns a scanner over the rule files embedded in the rules
// package.
func NewDefault() (*Scanner, error) {
	sets, err := LoadRules(rules.FS)
	if err != nil {
		return nil, err
	}

	return New(sets), nil
}

// Rules returns the rule set of a language, or nil.
func (s *Scanner) Rules(lang string) *RuleFile {
	return s.sets[lang]
}

// Scan checks every file as code of lang and returns the findings sorted
// by file, line and rule id.
func (s *Scanner) Scan(lang string, files []bundle.File) ([]bundle.Finding, error) {
	rf, ok := s.sets[lang]
	if !ok {
		return nil, fmt.Errorf("scanning: no rules for language %q", lang)
	}

	var all []bundle.Finding
	for _, f := range files {
		all = append(all, scanFile(rf, f.Name, string(f.Data))...)
	}

	return all, nil
}

func scanFile(rf *RuleFile, name, src string) []bundle.Finding {
	seen := map[string]bool{}
	var out []bundle.Finding
	add := func(f bundle.Finding) {
		key := fmt.Sprintf("%s:%d", f.RuleID, f.Line)
		if seen[key] || len(out) >= MaxFindingsPerFile {
			return
		}
		seen[key] = true
		out = append(out, f)
	}
	scanSource(rf, name, src, 0, 0, "", add)

	slices.SortFunc(out, func(a, b bundle.Finding) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.RuleID, b.RuleID)
	})

	return out
}

// scanSource scans src. At depth > 0, src is a string found inside the
// file at outerLine, and every finding is reported at that line.
func scanSource(rf *RuleFile, file, src string, depth, outerLine int, where string,
	add func(bundle.Finding)) {
	var f *facts
	if rf.Language == "sh" {
		f = analyzeShell(src)
	} else {
		f = analyzeCode(rf.Language, src, rf.Decoders)
	}

	report := func(r *Rule, line int, detail string) {
		if depth > 0 {
			line = outerLine
		}
		add(bundle.Finding{RuleID: r.ID, Severity: r.Severity, File: file, Line: line,
			Message: r.Message + ": " + quote(detail) + where})
	}
	for i := range rf.Rules {
		matchRule(&rf.Rules[i], f, report)
	}
	if depth >= maxNesting {
		return
	}
	for _, nested := range nestedCode(rf, f) {
		line := nested.line
		if depth > 0 {
			line = outerLine
		}
		scanSource(rf, file, nested.value, depth+1, line, nested.where, add)
	}
}

type nestedSource struct {
	value string
	line  int
	where string
}

// nestedCode returns strings to scan again as code: constants passed to a
// code sink, and base64 or hex strings that decode to text.
func nestedCode(rf *RuleFile, f *facts) []nestedSource {
	var out []nestedSource
	for _, r := range f.refs {
		if !r.call || !anyGlob(rf.CodeSinks, r.name) {
			continue
		}
		for _, a := range r.args {
			if a.constant && a.value != "" {
				out = append(out, nestedSource{a.value, r.line, " (in code passed to " + r.name + ")"})
			}
		}
	}
	for _, s := range f.strings {
		if text, kind, ok := decodeBlob(s.value); ok {
			out = append(out, nestedSource{text, s.line, " (in a " + kind + " string)"})
		}
	}

	return out
}

// decodeBlob decodes a base64 or hex string that turns into readable text.
func decodeBlob(s string) (string, string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < minBlobLength || strings.ContainsAny(s, " \n\t") {
		return "", "", false
	}
	if len(s)%2 == 0 && strings.Trim(s, "0123456789abcdefABCDEF") == "" {
		if text, ok := decodeConstant("hex", "", s); ok && readable(text) {
			return text, "hex", true
		}
	}
	if b, ok := decodeBase64(s); ok && readable(string(b)) {
		return string(b), "base64", true
	}

	return "", "", false
}

// readable reports whether text looks like source code: valid UTF-8, at
// least 95% printable, with a letter and a space or punctuation.
func readable(text string) bool {
	if !utf8.ValidString(text) || len(text) < 4 {
		return false
	}
	printable, letters, separators := 0, 0, 0
	for _, r := range text {
		if unicode.IsPrint(r) || r == '\n' || r == '\t' {
			printable++
		}
		if unicode.IsLetter(r) {
			letters++
		}
		if r == ' ' || r == '(' || r == '.' || r == ';' || r == '\n' {
			separators++
		}
	}
	total := utf8.RuneCountInString(text)

	return printable*100 >= total*95 && letters > 0 && separators > 0
}

func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}

	return fmt.Sprintf("%q", s)
}
