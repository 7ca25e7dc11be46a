package errs

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCatalogueUpToDate(t *testing.T) {
	out := filepath.Join(t.TempDir(), "catalogue.go")
	cmd := exec.Command("go", "run", "./internal/gencat", "../../schemas/errors.json", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running gencat: %v\n%s", err, msg)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("catalogue.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("catalogue.go is stale: run `go generate ./libs/errs`")
	}
}

func TestIsMatchesDetailedCopy(t *testing.T) {
	err := NotFound.Withf("key %q not found", "openai-prod")
	if !errors.Is(err, NotFound) {
		t.Error("errors.Is(detailed NotFound, NotFound) = false, want true")
	}
	if errors.Is(err, Conflict) {
		t.Error("errors.Is(NotFound, Conflict) = true, want false")
	}
	if NotFound.Description == err.Description {
		t.Error("Withf modified the shared catalogue entry")
	}
}

func TestPublicDropsCause(t *testing.T) {
	cause := errors.New("kv: bucket NODEX_KEYS: disk I/O on /var/lib/secret")
	wrapped := Unavailable.Wrap(cause)
	if !errors.Is(wrapped, cause) {
		t.Fatal("Wrap lost the cause")
	}
	wire, err := json.Marshal(wrapped.Public())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(wire), "secret") {
		t.Errorf("wire form %s leaks the internal cause", wire)
	}
}

func TestFrom(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"coded", AccessDenied, AccessDenied.Code},
		{"wrapped coded", errors.Join(errors.New("x"), RateLimited), RateLimited.Code},
		{"plain", errors.New("boom"), Internal.Code},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := From(tt.err)
			code := 0
			if got != nil {
				code = got.Code
			}
			if code != tt.want {
				t.Errorf("From(%v).Code = %d, want %d", tt.err, code, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	if got := Lookup(10404); got != NotFound {
		t.Errorf("Lookup(10404) = %v, want NotFound", got)
	}
	if got := Lookup(1); got != nil {
		t.Errorf("Lookup(1) = %v, want nil", got)
	}
}
