// Package corpus runs the third-party test corpus through a whole
// in-process NodeX system: every benign program must pass its own test in
// the sandbox, and every hostile program must be refused by codesec or
// contained by the sandbox. The corpus is read in place from NODEX_CORPUS,
// or from ../shared/corpus beside the repository root.
package corpus

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nodexsec/nodex/libs/agent"
)

// EnvDir names the environment variable that overrides the corpus location.
const EnvDir = "NODEX_CORPUS"

// Kind is what an item must do: pass (Benign), or be refused or contained (Hostile).
type Kind int

// The two kinds of corpus items.
const (
	Benign Kind = iota
	Hostile
)

// Item is one corpus entry as an agent's submission.
type Item struct {
	// File is the corpus file the item comes from, such as HumanEval.jsonl.gz.
	File string
	// ID identifies the item within its file.
	ID   string
	Kind Kind
	// Submission is the code as an agent sends it. Its Language may be one
	// that codesec does not support (fork bombs in C, for example).
	Submission agent.Submission
	// CheckStderr, for HumanEval-X JavaScript, fails a run whose stderr
	// contains "Assertion failed": console.assert does not throw in Node.
	CheckStderr bool
}

// Dir returns the corpus directory: $NODEX_CORPUS, or ../shared/corpus
// beside the repository root (the folder that holds go.work).
func Dir() (string, error) {
	if dir := os.Getenv(EnvDir); dir != "" {
		return checkDir(dir)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locating corpus: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return checkDir(filepath.Join(dir, "..", "shared", "corpus"))
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.work above %s: set %s to the corpus folder", wd, EnvDir)
		}
	}
}

func checkDir(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "benign")); err != nil {
		return "", fmt.Errorf("corpus at %s has no benign folder (set %s): %w", dir, EnvDir, err)
	}

	return dir, nil
}

// Load returns the benign and hostile code items of the corpus, grouped by
// file in a fixed order.
func Load(dir string) (map[string][]Item, error) {
	loaders := []func(string) ([]Item, error){humanEval, mbpp, humanEvalJS, exercismBash,
		redCode, injectedHumanEval, forkBombs, typhon}
	out := map[string][]Item{}
	for _, load := range loaders {
		items, err := load(dir)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return nil, fmt.Errorf("corpus at %s: a loader returned no items", dir)
		}
		out[items[0].File] = items
	}

	return out, nil
}

// Files is the order in which the tables list the corpus files.
var Files = []string{"HumanEval.jsonl.gz", "mbpp.jsonl.gz", "humaneval-x_js.jsonl.gz",
	"exercism_bash.jsonl.gz", "redcode-exec_python.jsonl.gz", "injected_humaneval.csv.gz",
	"forkbombs.jsonl", "typhon_pyjail_payloads.json"}

func single(file, id string, kind Kind, lang, name, code string) Item {
	return Item{File: file, ID: id, Kind: kind, Submission: agent.Submission{
		Language:   lang,
		Files:      []agent.SourceFile{{Name: name, Content: code}},
		Entrypoint: name,
	}}
}

func humanEval(dir string) ([]Item, error) {
	const file = "HumanEval.jsonl.gz"
	var items []Item
	err := readJSONL(filepath.Join(dir, "benign", file), func(line []byte) error {
		var r struct {
			TaskID            string `json:"task_id"`
			Prompt            string `json:"prompt"`
			CanonicalSolution string `json:"canonical_solution"`
			Test              string `json:"test"`
			EntryPoint        string `json:"entry_point"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		code := r.Prompt + r.CanonicalSolution + "\n" + r.Test + "\n" +
			fmt.Sprintf("check(%s)\n", r.EntryPoint)
		items = append(items, single(file, r.TaskID, Benign, "python", "main.py", code))
		return nil
	})

	return items, err
}

func mbpp(dir string) ([]Item, error) {
	const file = "mbpp.jsonl.gz"
	var items []Item
	err := readJSONL(filepath.Join(dir, "benign", file), func(line []byte) error {
		var r struct {
			TaskID        int      `json:"task_id"`
			Code          string   `json:"code"`
			TestSetupCode string   `json:"test_setup_code"`
			TestList      []string `json:"test_list"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		code := r.Code + "\n" + r.TestSetupCode + "\n" + strings.Join(r.TestList, "\n") + "\n"
		items = append(items, single(file, fmt.Sprint(r.TaskID), Benign, "python", "main.py", code))
		return nil
	})

	return items, err
}

func humanEvalJS(dir string) ([]Item, error) {
	const file = "humaneval-x_js.jsonl.gz"
	var items []Item
	err := readJSONL(filepath.Join(dir, "benign", file), func(line []byte) error {
		var r struct {
			TaskID            string `json:"task_id"`
			Prompt            string `json:"prompt"`
			CanonicalSolution string `json:"canonical_solution"`
			Test              string `json:"test"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		code := r.Prompt + r.CanonicalSolution + "\n" + r.Test + "\n"
		it := single(file, r.TaskID, Benign, "javascript", "main.js", code)
		it.CheckStderr = true
		items = append(items, it)
		return nil
	})

	return items, err
}

// exercismBash submits the reference solution, the bats tests, the
// bats-extra helper and a run.sh entrypoint that runs every test file with
// BATS_RUN_SKIPPED=true (without it, bats skips every test after the first).
func exercismBash(dir string) ([]Item, error) {
	const file = "exercism_bash.jsonl.gz"
	extra, err := readAll(filepath.Join(dir, "benign", "exercism_bash_bats-extra.bash"))
	if err != nil {
		return nil, err
	}
	var items []Item
	err = readJSONL(filepath.Join(dir, "benign", file), func(line []byte) error {
		var r struct {
			Slug         string            `json:"slug"`
			SolutionFile string            `json:"solution_file"`
			Solution     string            `json:"solution"`
			TestFiles    map[string]string `json:"test_files"`
			Deprecated   bool              `json:"deprecated"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		files := []agent.SourceFile{
			{Name: filepath.Base(r.SolutionFile), Content: r.Solution},
			{Name: "bats-extra.bash", Content: string(extra)},
		}
		run := "#!/bin/sh\ncd /work || exit 2\nstatus=0\n"
		names := make([]string, 0, len(r.TestFiles))
		for name := range r.TestFiles {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			files = append(files, agent.SourceFile{Name: name, Content: r.TestFiles[name]})
			run += "BATS_RUN_SKIPPED=true bats " + name + " || status=1\n"
		}
		run += "exit $status\n"
		files = append(files, agent.SourceFile{Name: "run.sh", Content: run})
		items = append(items, Item{File: file, ID: r.Slug, Kind: Benign, Submission: agent.Submission{
			Language: "sh", Files: files, Entrypoint: "run.sh",
		}})
		return nil
	})

	return items, err
}

func redCode(dir string) ([]Item, error) {
	const file = "redcode-exec_python.jsonl.gz"
	var items []Item
	err := readJSONL(filepath.Join(dir, "hostile", file), func(line []byte) error {
		var r struct {
			Index string `json:"Index"`
			Code  string `json:"Code"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		items = append(items, single(file, r.Index, Hostile, "python", "main.py", r.Code))
		return nil
	})

	return items, err
}

func injectedHumanEval(dir string) ([]Item, error) {
	const file = "injected_humaneval.csv.gz"
	data, err := readAll(filepath.Join(dir, "hostile", file))
	if err != nil {
		return nil, err
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(records) < 2 {
		return nil, fmt.Errorf("reading %s: %d records: %w", file, len(records), err)
	}
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	var items []Item
	for i, rec := range records[1:] {
		id := fmt.Sprintf("%d:%s:%s", i, rec[col["task_id"]], rec[col["cwe_id"]])
		items = append(items, single(file, id, Hostile, "python", "main.py",
			rec[col["cleaned_code_string"]]))
	}

	return items, nil
}

// forkBombs maps each item's language to a codesec language. The others
// keep their own name, which codesec rejects as unsupported.
func forkBombs(dir string) ([]Item, error) {
	const file = "forkbombs.jsonl"
	langs := map[string]string{"python": "python", "javascript": "javascript", "sh": "sh",
		"bash": "bash"}
	var items []Item
	err := readJSONL(filepath.Join(dir, "hostile", file), func(line []byte) error {
		var r struct{ ID, Language, Code string }
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		lang, ok := langs[r.Language]
		if !ok {
			lang = r.Language
		}
		items = append(items, single(file, r.ID, Hostile, lang, "main", r.Code))
		return nil
	})

	return items, err
}

// typhon fills the slots of the Typhon pyjail templates, so that each is a
// complete Python program, with the values codesec's own corpus tests use
// (services/codesec/internal/corpus/typhon.go, described in the codesec
// README).
func typhon(dir string) ([]Item, error) {
	const file = "typhon_pyjail_payloads.json"
	data, err := readAll(filepath.Join(dir, "hostile", file))
	if err != nil {
		return nil, err
	}
	categories, err := typhonCategories(data)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(categories))
	for c := range categories {
		names = append(names, c)
	}
	sort.Strings(names)
	var items []Item
	for _, c := range names {
		for i, entry := range categories[c] {
			if len(entry) == 0 {
				continue
			}
			required := ""
			if len(entry) > 1 {
				required = entry[1]
			}
			items = append(items, single(file, fmt.Sprintf("%s/%d", c, i), Hostile, "python",
				"main.py", fillTyphon(entry[0], required)))
		}
	}

	return items, nil
}

// typhonCategories decodes the categories. Most are lists of entries; a few
// (python2) are objects of named lists, flattened as "category/name".
func typhonCategories(data []byte) (map[string][][]string, error) {
	var doc struct {
		Categories map[string]json.RawMessage `json:"categories"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decoding typhon_pyjail_payloads.json: %w", err)
	}
	out := map[string][][]string{}
	for name, raw := range doc.Categories {
		var list [][]string
		if err := json.Unmarshal(raw, &list); err == nil {
			out[name] = list
			continue
		}
		var nested map[string][][]string
		if err := json.Unmarshal(raw, &nested); err != nil {
			return nil, fmt.Errorf("decoding Typhon category %q: %w", name, err)
		}
		for sub, list := range nested {
			out[name+"/"+sub] = list
		}
	}

	return out, nil
}

// typhonSlots are the slot values. Scaffolding slots get neutral values and
// goal slots run the command "id" through /bin/sh.
var typhonSlots = map[string]string{
	"RANDOMSTRING": "'nodex'", "RANDOMVARNAME": "nodex_var", "RANDOMINT": "7",
	"BUILTINS_SET": "builtins.__dict__", "MODULE_BUILTINS": "builtins",
	"COMMAND": "'id'", "CMD": "'id'", "CMD_FILE": "'/bin/sh'", "UNFOLD_CMD_ARGS": "'-c', 'id'",
	"FILECONTENTSTRING": "open('flag.txt').read()", "FILECONTENTSIO": "open('flag.txt')",
	"GENERATOR": "(nodex_g for nodex_g in ()).gi_frame", "BUILTINOBJ": "()",
	"OBJECT": "object", "TYPE": "type", "USER_DEFINED_CLASS": "NodexClass",
	"USER_DEFINED_FUNCTION": "nodex_function", "USER_DEFINED_LAMBDA": "nodex_lambda",
	"TRUE": "True", "EXCEPTION_ZERODIVISIONERROR": "ZeroDivisionError",
}

// typhonModules are the required names in the Typhon data that are
// importable modules rather than builtins or slots.
var typhonModules = []string{"_aix_support", "_posixsubprocess", "code", "codecs", "ctypes",
	"doctest", "importlib", "io", "linecache", "multiprocessing", "os", "pdb", "profile", "pty",
	"pydoc", "subprocess", "sys", "timeit", "uuid"}

// fillTyphon imports builtins and each required module, then replaces the
// slots longest first, so that CMD_FILE is replaced before CMD.
func fillTyphon(template, required string) string {
	var b strings.Builder
	b.WriteString("import builtins\n")
	for _, name := range strings.Split(required, ",") {
		if name = strings.TrimSpace(name); slices.Contains(typhonModules, name) {
			b.WriteString("import " + name + "\n")
		}
	}
	if strings.Contains(template, "CDLL") && !strings.Contains(required, "ctypes") {
		b.WriteString("import ctypes\n")
	}
	slots := make([]string, 0, len(typhonSlots))
	for name := range typhonSlots {
		slots = append(slots, name)
	}
	slices.SortFunc(slots, func(a, b string) int { return len(b) - len(a) })
	body := template
	for _, slot := range slots {
		body = strings.ReplaceAll(body, slot, typhonSlots[slot])
	}
	b.WriteString(body + "\n")

	return b.String()
}

// readJSONL calls fn with each non-empty line of a JSONL file, gzipped
// when the name ends in .gz.
func readJSONL(path string, fn func(line []byte) error) error {
	data, err := readAll(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
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

// readAll reads a corpus file, unzipping it when the name ends in .gz.
func readAll(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening corpus file: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("opening gzip corpus file %s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading corpus file %s: %w", path, err)
	}

	return data, nil
}
