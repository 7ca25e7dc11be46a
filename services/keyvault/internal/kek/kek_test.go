package kek

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "kek")
	if err := GenerateFile(path); err != nil {
		t.Fatalf("GenerateFile: %v", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Mode().Perm(); got != 0o600 {
		t.Errorf("mode = %04o, want 0600", got)
	}
	if err := GenerateFile(path); !errors.Is(err, os.ErrExist) {
		t.Errorf("second GenerateFile error = %v, want os.ErrExist", err)
	}
}

func TestLoadFileRejectsMissingAndOpen(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadFile(filepath.Join(dir, "none")); !errors.Is(err, ErrNoKEK) {
		t.Errorf("missing file error = %v, want ErrNoKEK", err)
	}
	path := filepath.Join(dir, "kek")
	if err := GenerateFile(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("mode 0644 error = %v, want ErrInsecureFile", err)
	}
}

func TestParseRejectsWithoutEcho(t *testing.T) {
	secretish := "c2VjcmV0c2VjcmV0c2VjcmV0"
	tests := []struct {
		name string
		text string
		want error
	}{
		{"empty", "  \n# only a comment\n", ErrNoKEK},
		{"short key", "1 " + secretish, ErrInvalidKeyring},
		{"no number", secretish, ErrInvalidKeyring},
		{"zero version", "0 " + secretish, ErrInvalidKeyring},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), secretish) {
				t.Errorf("error echoes key material: %v", err)
			}
		})
	}
}

func TestRotateKeepsOldVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kek")
	if err := GenerateFile(path); err != nil {
		t.Fatal(err)
	}
	ring, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	aad := []byte("binding")
	wrapped, v1, err := ring.Wrap(ctx, []byte("0123456789abcdef0123456789abcdef"), aad)
	if err != nil {
		t.Fatal(err)
	}

	v2, err := ring.Rotate()
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if v2 != v1+1 || ring.CurrentVersion() != v2 {
		t.Errorf("versions after rotate: new %d, current %d, want %d", v2, ring.CurrentVersion(), v1+1)
	}
	if _, err := ring.Unwrap(ctx, v1, wrapped, aad); err != nil {
		t.Errorf("unwrapping under old version: %v", err)
	}
	if _, err := ring.Unwrap(ctx, v2, wrapped, aad); err == nil {
		t.Error("unwrapping under the wrong version succeeded")
	}

	// A second process sharing the file loads the new version.
	other, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if other.CurrentVersion() != v2 {
		t.Errorf("reloaded current version = %d, want %d", other.CurrentVersion(), v2)
	}
}

func TestEnvKeyringReadOnly(t *testing.T) {
	ring, err := Parse("1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;2 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if ring.CurrentVersion() != 2 {
		t.Errorf("current version = %d, want 2", ring.CurrentVersion())
	}
	if _, err := ring.Rotate(); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Rotate error = %v, want ErrReadOnly", err)
	}
}
