package domain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"simple", "openai-prod", true},
		{"digits and dots", "0.team_a-1", true},
		{"max length", strings.Repeat("a", 63), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", 64), false},
		{"upper case", "OpenAI", false},
		{"leading dot", ".hidden", false},
		{"leading dash", "-x", false},
		{"space", "a b", false},
		{"slash", "a/b", false},
		{"wildcard", "a*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			if tt.ok && err != nil {
				t.Fatalf("ValidateName(%q) = %v, want nil", tt.in, err)
			}
			if tt.ok {
				return
			}
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateName(%q) = %v, want ErrInvalidName", tt.in, err)
			}
			if !strings.Contains(err.Error(), NameRule) {
				t.Errorf("error %q does not state the rule", err)
			}
		})
	}
}

func TestProvidersAcceptTheirFakes(t *testing.T) {
	for _, p := range Providers {
		for _, f := range p.Formats {
			if err := p.ValidateKey(f.Fake()); err != nil {
				t.Errorf("%s %s: fake rejected: %v", p.ID, f.Kind, err)
			}
		}
	}
}

// TestMalformedKeysRejectedWithoutEcho breaks each format in several ways
// and checks that the error names the problem but never the value.
func TestMalformedKeysRejectedWithoutEcho(t *testing.T) {
	for _, p := range Providers {
		for _, f := range p.Formats {
			good := f.Fake()
			bad := map[string][]byte{
				"truncated":     good[:len(good)-1],
				"extra char":    append(bytes.Clone(good), 'Q'),
				"space inside":  append(append(bytes.Clone(good[:len(good)/2]), ' '), good[len(good)/2+1:]...),
				"newline after": append(bytes.Clone(good), '\n'),
				"bad char":      append(append(bytes.Clone(good[:len(good)-3]), '!'), good[len(good)-2:]...),
			}
			if !fixedLength(f) {
				delete(bad, "extra char")
			}
			for breakage, v := range bad {
				err := p.ValidateKey(v)
				if !errors.Is(err, ErrMalformedKey) {
					t.Errorf("%s %s %s: error = %v, want ErrMalformedKey", p.ID, f.Kind, breakage, err)
					continue
				}
				body := strings.TrimSpace(string(v))
				body = body[len(body)/3:]
				if strings.Contains(err.Error(), body[:min(12, len(body))]) {
					t.Errorf("%s %s %s: error echoes the value", p.ID, f.Kind, breakage)
				}
			}
		}
	}
}

func fixedLength(f Format) bool {
	for _, s := range f.Segments {
		if s.MinLen != s.MaxLen {
			return false
		}
	}

	return true
}

func TestProviderSpecificRules(t *testing.T) {
	anthropic, _ := LookupProvider("anthropic")
	noAA := anthropic.Formats[0].Fake()
	noAA[len(noAA)-1] = 'B'
	if err := anthropic.ValidateKey(noAA); err == nil {
		t.Error("anthropic key not ending in AA accepted")
	}

	openai, _ := LookupProvider("openai")
	noMarker := openai.Formats[0].Fake()
	copy(noMarker[len("sk-proj-")+74:], "XXXXXXXX")
	if err := openai.ValidateKey(noMarker); err == nil {
		t.Error("openai key without the T3BlbkFJ marker accepted")
	}

	if _, err := LookupProvider("acme"); !errors.Is(err, ErrUnknownProvider) {
		t.Errorf("unknown provider error = %v, want ErrUnknownProvider", err)
	}
}

func TestSecretRedacts(t *testing.T) {
	value := "sk-ant-api03-FAKEVALUE"
	s := NewSecret([]byte(value))

	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("x", "secret", s, "wrapped", struct{ S Secret }{s})
	js, err := json.Marshal(map[string]any{"s": s})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"slog": logs.String(), "json": string(js),
		"%v": fmt.Sprintf("%v", s), "%s": fmt.Sprintf("%s", s), "%q": fmt.Sprintf("%q", s),
		"%x": fmt.Sprintf("%x", s), "%#v": fmt.Sprintf("%#v", s), "%+v": fmt.Sprintf("%+v", &s),
	}
	for verb, out := range outputs {
		if strings.Contains(out, "FAKEVALUE") || strings.Contains(out, "46414b45") {
			t.Errorf("%s output contains the value: %s", verb, out)
		}
	}
	if string(s.Reveal()) != value {
		t.Error("Reveal does not return the value")
	}

	var in struct{ Value Secret }
	if err := json.Unmarshal([]byte(`{"Value":"abc"}`), &in); err != nil {
		t.Fatal(err)
	}
	if string(in.Value.Reveal()) != "abc" {
		t.Errorf("unmarshalled value = %q, want abc", in.Value.Reveal())
	}
}

func TestRotateGraceThenRetire(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	k := Key{Name: "k", Provider: "groq"}
	k.Rotate(Version{Number: 1, State: StateActive, Sealed: &Sealed{}}, t0, time.Hour)
	k.Rotate(Version{Number: 2, State: StateActive, Sealed: &Sealed{}}, t0, time.Hour)

	latest, err := k.Retrievable(0, t0)
	if err != nil || latest.Number != 2 {
		t.Fatalf("latest = %v, %v; want version 2", latest, err)
	}
	if _, err := k.Retrievable(1, t0.Add(59*time.Minute)); err != nil {
		t.Errorf("version 1 inside grace: %v", err)
	}
	if _, err := k.Retrievable(1, t0.Add(time.Hour)); !errors.Is(err, ErrVersionInactive) {
		t.Errorf("version 1 after grace: error = %v, want ErrVersionInactive", err)
	}
	if !k.RetireExpired(t0.Add(time.Hour)) {
		t.Fatal("RetireExpired changed nothing")
	}
	if v := k.Versions[0]; v.State != StateRetired || v.Sealed != nil {
		t.Errorf("version 1 after retire: state %s, sealed kept %v", v.State, v.Sealed != nil)
	}
	if err := k.Disable(2); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Retrievable(0, t0); !errors.Is(err, ErrVersionInactive) {
		t.Errorf("disabled latest: error = %v, want ErrVersionInactive", err)
	}
}
