// Package corpus turns the third-party test corpus (benign programming
// tasks and hostile payloads) into codesec submissions, read in place.
// Tests and benchmarks use it; the service does not.
package corpus

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodexsec/nodex/services/codesec/internal/domain"
)

// EnvDir names the environment variable that overrides the corpus location.
const EnvDir = "NODEX_CORPUS"

// Item is one corpus entry as a submission.
type Item struct {
	// Set is the corpus file the item comes from.
	Set string
	// ID identifies the item within its set.
	ID string
	// Submission is the code as an agent would send it. Its Language may be
	// one codesec does not support (fork bombs in C, for example).
	Submission domain.Submission
}

// Dir returns the corpus directory: $NODEX_CORPUS, or ../shared/corpus
// beside the repository root (the directory that holds go.work), found by
// walking up from the working directory.
func Dir() (string, error) {
	if dir := os.Getenv(EnvDir); dir != "" {
		return checkDir(dir)
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("locating corpus (or set %s): %w", EnvDir, err)
	}

	return checkDir(filepath.Join(root, "..", "shared", "corpus"))
}

func checkDir(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "benign")); err != nil {
		return "", fmt.Errorf("corpus at %s has no benign directory (set %s): %w", dir, EnvDir, err)
	}

	return dir, nil
}

func single(set, id, lang, name, code string) Item {
	return Item{Set: set, ID: id, Submission: domain.Submission{
		Language:   lang,
		Files:      []domain.SourceFile{{Name: name, Content: code}},
		Entrypoint: name,
	}}
}

// readJSONL calls fn with each line of a JSONL file, gzipped when the name
// ends in .gz.
func readJSONL(path string, fn func(line []byte) error) error {
	r, closeFn, err := open(path)
	if err != nil {
		return err
	}
	defer closeFn()

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		if err := fn(sc.Bytes()); err != nil {
			return fmt.Errorf("reading %s: %w", filepath.Base(path), err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Base(path), err)
	}

	return nil
}

func open(path string) (io.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("opening corpus file: %w", err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, func() { f.Close() }, nil
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("opening gzip corpus file %s: %w", path, err)
	}

	return gz, func() { gz.Close(); f.Close() }, nil
}

func readAll(path string) ([]byte, error) {
	r, closeFn, err := open(path)
	if err != nil {
		return nil, err
	}
	defer closeFn()

	return io.ReadAll(r)
}

var errNoItems = errors.New("corpus file has no items")
