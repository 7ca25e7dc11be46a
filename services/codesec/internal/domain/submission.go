// Package domain holds codesec's pure types and rules: the submission an
// agent sends, its validation, and the verdict on static findings. It does
// no I/O.
package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/nodexsec/nodex/libs/bundle"
)

// Languages codesec accepts, each with a sandbox runtime.
const (
	LangPython     = "python"
	LangJavaScript = "javascript"
	LangSh         = "sh"
)

// Languages lists the supported languages in the order error messages name
// them.
var Languages = []string{LangPython, LangJavaScript, LangSh}

// Limits on a submission. Files and stdin together stay under NATS's default
// max_payload of 1 MiB, and well under the bundle format's own limits, so
// anything valid here can be sent and sealed.
const (
	MaxFiles            = 64
	MaxFileBytes        = 256 << 10
	MaxTotalBytes       = 512 << 10
	MaxStdinBytes       = 128 << 10
	MaxArgs             = 64
	MaxArgBytes         = 4096
	MaxModules          = 64
	MaxWallTimeMillis   = 300_000
	MaxCPUTimeMillis    = 300_000
	MaxMemoryBytes      = 1 << 30
	MaxProcesses        = 256
	MaxOutputBytes      = 16 << 20
	maxModuleNameLength = 128
)

// SourceFile is one file of a submission. Content is UTF-8 text.
type SourceFile struct {
	Name    string `json:"name"`
	Content string `json:"content"`
}

// Submission is the body of a codesec.submit request.
type Submission struct {
	Language   string        `json:"language"`
	Files      []SourceFile  `json:"files"`
	Entrypoint string        `json:"entrypoint"`
	Modules    []string      `json:"modules,omitempty"`
	Args       []string      `json:"args,omitempty"`
	Stdin      string        `json:"stdin,omitempty"`
	Limits     bundle.Limits `json:"limits"`
}

// Problem kinds, so a transport can map them to coded errors.
const (
	ProblemInvalid     = "invalid"
	ProblemTooLarge    = "too_large"
	ProblemUnsupported = "unsupported"
)

// ValidationError names the invalid field of a submission, with the
// offending value (quoted and shortened) and how to fix it.
type ValidationError struct {
	Kind    string
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	return e.Field + ": " + e.Message
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Kind: ProblemInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func tooLarge(field, format string, args ...any) *ValidationError {
	return &ValidationError{Kind: ProblemTooLarge, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Quote returns s quoted for an error message, cut to 64 bytes so a hostile
// value cannot flood logs or replies.
func Quote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return fmt.Sprintf("%q", s)
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}

	return fmt.Sprintf("%q...(%d bytes)", s[:cut], len(s))
}

var moduleName = regexp.MustCompile(`^[A-Za-z_@][A-Za-z0-9_.@/-]*$`)

// Validate checks every field and returns the first problem as a
// *ValidationError.
func (s *Submission) Validate() error {
	if !slices.Contains(Languages, s.Language) {
		return &ValidationError{Kind: ProblemUnsupported, Field: "language", Message: fmt.Sprintf(
			"language %s is not supported; use one of %s", Quote(s.Language),
			strings.Join(Languages, ", "))}
	}
	if err := s.validateFiles(); err != nil {
		return err
	}
	if err := s.validateRun(); err != nil {
		return err
	}

	return validateLimits(s.Limits)
}

func (s *Submission) validateFiles() error {
	if len(s.Files) == 0 {
		return invalid("files", "no files; send at least the entrypoint file")
	}
	if len(s.Files) > MaxFiles {
		return tooLarge("files", "%d files exceed the limit of %d; merge files", len(s.Files), MaxFiles)
	}

	total := 0
	seen := make(map[string]bool, len(s.Files))
	for i, f := range s.Files {
		field := fmt.Sprintf("files[%d]", i)
		if err := checkFileName(field+".name", f.Name); err != nil {
			return err
		}
		if seen[f.Name] {
			return invalid(field+".name", "file name %s appears twice; give each file a unique name",
				Quote(f.Name))
		}
		seen[f.Name] = true
		if err := checkContent(field+".content", f); err != nil {
			return err
		}
		total += len(f.Content)
	}
	if total > MaxTotalBytes {
		return tooLarge("files", "files total %d bytes, over the limit of %d; send less code",
			total, MaxTotalBytes)
	}
	if !seen[s.Entrypoint] {
		return invalid("entrypoint", "entrypoint %s is not one of the files; name a file you sent",
			Quote(s.Entrypoint))
	}

	return nil
}

func checkFileName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "file name is empty; give a relative path such as main.py")
	case !utf8.ValidString(name):
		return invalid(field, "file name %s is not valid UTF-8", Quote(name))
	case strings.HasPrefix(name, "/"):
		return invalid(field, "file name %s is an absolute path; use a relative path", Quote(name))
	case slices.Contains(strings.Split(name, "/"), ".."):
		return invalid(field, "file name %s contains \"..\"; use a path inside the work dir",
			Quote(name))
	}
	if err := bundle.CheckFileName(name); err != nil {
		return invalid(field, "file name %s is not allowed: it must be a relative path of at "+
			"most %d bytes without control characters, backslashes or empty, \".\" or \"..\" "+
			"elements", Quote(name), bundle.MaxFileNameBytes)
	}

	return nil
}

func checkContent(field string, f SourceFile) error {
	if len(f.Content) > MaxFileBytes {
		return tooLarge(field, "file %s has %d bytes, over the limit of %d; split it",
			Quote(f.Name), len(f.Content), MaxFileBytes)
	}
	if !utf8.ValidString(f.Content) {
		return invalid(field, "file %s is not valid UTF-8 text; send source code as UTF-8",
			Quote(f.Name))
	}
	if i := strings.IndexByte(f.Content, 0); i >= 0 {
		line := strings.Count(f.Content[:i], "\n") + 1
		return invalid(field, "file %s contains a NUL byte on line %d; send text only",
			Quote(f.Name), line)
	}

	return nil
}

func (s *Submission) validateRun() error {
	if len(s.Modules) > MaxModules {
		return tooLarge("modules", "%d modules exceed the limit of %d", len(s.Modules), MaxModules)
	}
	for i, m := range s.Modules {
		if len(m) > maxModuleNameLength || !moduleName.MatchString(m) || strings.Contains(m, "..") {
			return invalid(fmt.Sprintf("modules[%d]", i), "module name %s is invalid; use a "+
				"package name such as json or lodash", Quote(m))
		}
	}

	if len(s.Args) > MaxArgs {
		return tooLarge("args", "%d arguments exceed the limit of %d", len(s.Args), MaxArgs)
	}
	for i, a := range s.Args {
		if err := checkText(fmt.Sprintf("args[%d]", i), a, MaxArgBytes); err != nil {
			return err
		}
	}

	return checkText("stdin", s.Stdin, MaxStdinBytes)
}

// checkText rejects oversized values, invalid UTF-8 and NUL bytes, which a
// process cannot receive in an argument.
func checkText(field, value string, limit int) error {
	switch {
	case len(value) > limit:
		return tooLarge(field, "value of %d bytes is over the limit of %d", len(value), limit)
	case !utf8.ValidString(value):
		return invalid(field, "value %s is not valid UTF-8", Quote(value))
	case strings.IndexByte(value, 0) >= 0:
		return invalid(field, "value %s contains a NUL byte", Quote(value))
	}

	return nil
}

func validateLimits(l bundle.Limits) error {
	checks := []struct {
		field string
		value int64
		max   int64
	}{
		{"limits.wall_time_ms", l.WallTimeMillis, MaxWallTimeMillis},
		{"limits.cpu_time_ms", l.CPUTimeMillis, MaxCPUTimeMillis},
		{"limits.memory_bytes", l.MemoryBytes, MaxMemoryBytes},
		{"limits.max_processes", l.MaxProcesses, MaxProcesses},
		{"limits.max_output_bytes", l.MaxOutputBytes, MaxOutputBytes},
	}
	for _, c := range checks {
		if c.value < 0 || c.value > c.max {
			return invalid(c.field, "value %d is out of range; use 0 for the default or up to %d",
				c.value, c.max)
		}
	}

	return nil
}

// MaxRequestBytes bounds the JSON body [ParseSubmission] reads. JSON escapes
// can make text longer, so it is larger than the content limits.
const MaxRequestBytes = 1 << 20

// ParseSubmission decodes a codesec.submit body strictly (one JSON object,
// no unknown fields) and validates it.
func ParseSubmission(data []byte) (*Submission, error) {
	if len(data) > MaxRequestBytes {
		return nil, tooLarge("body", "request of %d bytes is over the limit of %d",
			len(data), MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()

	var s Submission
	if err := dec.Decode(&s); err != nil {
		return nil, invalid("body", "request is not a valid submission object: %s; "+
			"send JSON with language, files and entrypoint", shorten(err.Error()))
	}
	if dec.More() {
		return nil, invalid("body", "request has data after the submission object; send one object")
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}

	return &s, nil
}

// shorten cuts a decoder message, which may quote input, to a bounded length.
func shorten(msg string) string {
	if len(msg) <= 200 {
		return msg
	}
	cut := 200
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}

	return msg[:cut] + "..."
}
