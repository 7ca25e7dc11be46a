package policy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxDirBytes bounds what ReadDir loads, matching the service's default
// limit on a pushed set.
const maxDirBytes = 512 << 10

// ReadDir reads a policy set directory into a push or test request: every
// *.rego file below dir, tests included, keyed by its slash-separated path
// relative to dir, and dir/data.json as the set's data. Directories named
// testdata are skipped. `nodex policy push DIR` and `nodex policy test DIR`
// send the result.
func ReadDir(dir string) (PushRequest, error) {
	req := PushRequest{Modules: map[string]string{}}
	total := 0

	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)

		switch {
		case strings.HasSuffix(rel, ".rego"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			total += len(b)
			req.Modules[rel] = string(b)
		case rel == "data.json":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			total += len(b)
			if err := json.Unmarshal(b, &req.Data); err != nil {
				return fmt.Errorf("decoding %s: %w", path, err)
			}
		case filepath.Base(rel) == "data.json":
			return fmt.Errorf("nested data file %s is not supported; merge it into %s",
				path, filepath.Join(dir, "data.json"))
		}
		if total > maxDirBytes {
			return fmt.Errorf("policy set in %s exceeds %d bytes", dir, maxDirBytes)
		}

		return nil
	})
	if err != nil {
		return PushRequest{}, fmt.Errorf("reading policy set %s: %w", dir, err)
	}
	if len(req.Modules) == 0 {
		return PushRequest{}, fmt.Errorf("reading policy set %s: no .rego files", dir)
	}

	return req, nil
}
