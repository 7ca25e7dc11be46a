package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestInstallSecrets(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
	data := filepath.Join(from, "..2026_01_01")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "a.creds"), []byte("new"), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..2026_01_01", filepath.Join(from, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/a.creds", filepath.Join(from, "a.creds")); err != nil {
		t.Fatal(err)
	}
	// A copy left by an earlier run of the init container is replaced.
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, "a.creds"), []byte("old"), 0o400); err != nil {
		t.Fatal(err)
	}

	names, err := InstallSecrets(from, to)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"a.creds"}) {
		t.Errorf("installed %v, want [a.creds]", names)
	}
	got, err := os.ReadFile(filepath.Join(to, "a.creds"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "new" {
		t.Errorf("installed content %q, want %q", got, "new")
	}
	st, err := os.Stat(filepath.Join(to, "a.creds"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o400 {
		t.Errorf("installed mode %04o, want 0400", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(to)
	if len(entries) != 1 {
		t.Errorf("target holds %d entries, want 1 (no temporary file left)", len(entries))
	}
}

func TestInstallSecretsEmpty(t *testing.T) {
	if _, err := InstallSecrets(t.TempDir(), t.TempDir()); err == nil {
		t.Error("installing from an empty folder succeeded, want an error")
	}
}
