package authz

import (
	"fmt"
	"strings"
)

// Limits on an [Input]. They bound the work one decision can cost and reject
// values that no NodeX component produces.
const (
	// MaxInputBytes is the default bound on the summed length of all strings
	// in an Input.
	MaxInputBytes = 64 << 10
	maxIDLen      = 256
	maxNameLen    = 64
	maxRoles      = 64
	maxMapEntries = 32
	maxValueLen   = 1024
	maxFindings   = 1000
)

// validate checks in against the limits and character sets above. It returns
// an error wrapping [ErrInvalidInput] that names the field and the fix, so the
// denial reason shows the caller what to change.
func validate(in *Input, maxBytes int) error {
	size, err := checkSubject(&in.Subject)
	if err != nil {
		return err
	}

	if err := checkName("action", in.Action); err != nil {
		return err
	}
	if err := checkName("resource.type", in.Resource.Type); err != nil {
		return err
	}
	if in.Resource.ID != "" {
		if err := checkID("resource.id", in.Resource.ID); err != nil {
			return err
		}
	}
	n, err := checkMap("resource.labels", in.Resource.Labels)
	if err != nil {
		return err
	}
	size += n + len(in.Action) + len(in.Resource.Type) + len(in.Resource.ID)

	n, err = checkContext(&in.Context)
	if err != nil {
		return err
	}
	size += n

	if size > maxBytes {
		return fmt.Errorf("%w: input of %d bytes exceeds the limit of %d bytes",
			ErrInvalidInput, size, maxBytes)
	}

	return nil
}

func checkSubject(s *Subject) (int, error) {
	if err := checkID("subject.id", s.ID); err != nil {
		return 0, err
	}
	if len(s.Roles) > maxRoles {
		return 0, fmt.Errorf("%w: subject has %d roles, at most %d are allowed",
			ErrInvalidInput, len(s.Roles), maxRoles)
	}

	size := len(s.ID) + len(s.Kind) + len(s.Status)
	for i, r := range s.Roles {
		if err := checkText(fmt.Sprintf("subject.roles[%d]", i), r, maxIDLen); err != nil {
			return 0, err
		}
		size += len(r)
	}
	if err := checkText("subject.kind", s.Kind, maxNameLen); err != nil {
		return 0, err
	}
	if err := checkText("subject.status", s.Status, maxNameLen); err != nil {
		return 0, err
	}

	n, err := checkMap("subject.attributes", s.Attributes)

	return size + n, err
}

func checkContext(c *Context) (int, error) {
	if len(c.Findings) > maxFindings {
		return 0, fmt.Errorf("%w: context has %d findings, at most %d are allowed",
			ErrInvalidInput, len(c.Findings), maxFindings)
	}

	size := len(c.TraceID) + len(c.Purpose) + len(c.Provider)
	for i, f := range c.Findings {
		if !validSeverity(f.Severity) {
			return 0, fmt.Errorf("%w: context.findings[%d].severity %q is not one of "+
				"info, low, medium, high, critical", ErrInvalidInput, i, f.Severity)
		}
		field := fmt.Sprintf("context.findings[%d].rule_id", i)
		if err := checkText(field, f.RuleID, maxIDLen); err != nil {
			return 0, err
		}
		size += len(f.RuleID) + len(f.Severity) + 8
	}

	if err := checkText("context.trace_id", c.TraceID, maxIDLen); err != nil {
		return 0, err
	}
	if err := checkText("context.purpose", c.Purpose, maxValueLen); err != nil {
		return 0, err
	}
	if err := checkText("context.provider", c.Provider, maxNameLen); err != nil {
		return 0, err
	}

	n, err := checkMap("context.attributes", c.Attributes)

	return size + n, err
}

func checkMap(field string, m map[string]string) (int, error) {
	if len(m) > maxMapEntries {
		return 0, fmt.Errorf("%w: %s has %d entries, at most %d are allowed",
			ErrInvalidInput, field, len(m), maxMapEntries)
	}

	size := 0
	for k, v := range m {
		if err := checkName(field+" key", k); err != nil {
			return 0, err
		}
		if err := checkText(field+"["+k+"]", v, maxValueLen); err != nil {
			return 0, err
		}
		size += len(k) + len(v)
	}

	return size, nil
}

// checkName accepts lowercase identifiers: a-z, 0-9, "_", "-" and ".".
func checkName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidInput, field)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%w: %s is %d bytes long, at most %d are allowed",
			ErrInvalidInput, field, len(s), maxNameLen)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("%w: %s %q may contain only a-z, 0-9, '_', '-' and '.'",
				ErrInvalidInput, field, s)
		}
	}

	return nil
}

// checkID accepts identifiers that are safe as path segments, KV keys and
// subject tokens' sources: [A-Za-z0-9._:@-] without "..".
func checkID(field, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidInput, field)
	}
	if len(s) > maxIDLen {
		return fmt.Errorf("%w: %s is %d bytes long, at most %d are allowed",
			ErrInvalidInput, field, len(s), maxIDLen)
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("%w: %s %q contains \"..\"", ErrInvalidInput, field, s)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '@' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %s %q may contain only A-Z, a-z, 0-9 and '._:@-'",
				ErrInvalidInput, field, s)
		}
	}

	return nil
}

// checkText accepts printable UTF-8 of at most maxLen bytes. Control
// characters, NUL included, are rejected because they hide content in logs.
func checkText(field, s string, maxLen int) error {
	if len(s) > maxLen {
		return fmt.Errorf("%w: %s is %d bytes long, at most %d are allowed",
			ErrInvalidInput, field, len(s), maxLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return fmt.Errorf("%w: %s contains a control character or invalid UTF-8 "+
				"(%q)", ErrInvalidInput, field, s)
		}
	}

	return nil
}

func validSeverity(s string) bool {
	switch s {
	case SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		return true
	}

	return false
}

// ValidateSubjectID returns an error wrapping [ErrInvalidInput] unless id is
// a valid subject id: 1-256 bytes of [A-Za-z0-9._:@-] without "..".
func ValidateSubjectID(id string) error {
	return checkID("subject id", id)
}
