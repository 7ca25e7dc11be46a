package corpus

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Hostile returns every hostile code item as a submission. Prompts (the
// CyberSecEval sets) and plain path lists are not code and are left out.
func Hostile(dir string) ([]Item, error) {
	var items []Item
	loaders := []func(string) ([]Item, error){redCode, injectedHumanEval, Typhon, forkBombs,
		markdownBlocks("patt_ssti_python.md"), markdownBlocks("patt_deserialization_python.md"),
		commandLines("patt_command_exec.txt"), commandLines("patt_command-execution-unix.txt")}
	for _, load := range loaders {
		set, err := load(filepath.Join(dir, "hostile"))
		if err != nil {
			return nil, err
		}
		if len(set) == 0 {
			return nil, errNoItems
		}
		items = append(items, set...)
	}

	return items, nil
}

func redCode(dir string) ([]Item, error) {
	var items []Item
	err := readJSONL(filepath.Join(dir, "redcode-exec_python.jsonl.gz"), func(line []byte) error {
		var r struct {
			Index string `json:"Index"`
			Code  string `json:"Code"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		items = append(items, single("redcode-exec_python", r.Index, "python", "main.py", r.Code))
		return nil
	})

	return items, err
}

func injectedHumanEval(dir string) ([]Item, error) {
	data, err := readAll(filepath.Join(dir, "injected_humaneval.csv.gz"))
	if err != nil {
		return nil, err
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading injected_humaneval.csv.gz: %w", err)
	}

	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	var items []Item
	for i, rec := range records[1:] {
		id := fmt.Sprintf("%d:%s:%s", i, rec[col["task_id"]], rec[col["cwe_id"]])
		items = append(items, single("injected_humaneval", id, "python", "main.py",
			rec[col["cleaned_code_string"]]))
	}

	return items, nil
}

// forkBombs maps each item's language to a codesec language; the others
// keep their own name, which validation refuses as unsupported.
func forkBombs(dir string) ([]Item, error) {
	langs := map[string]string{"python": "python", "javascript": "javascript", "sh": "sh",
		"bash": "sh"}
	var items []Item
	err := readJSONL(filepath.Join(dir, "forkbombs.jsonl"), func(line []byte) error {
		var r struct{ ID, Language, Code string }
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		lang, ok := langs[r.Language]
		if !ok {
			lang = r.Language
		}
		items = append(items, single("forkbombs", r.ID, lang, "main", r.Code))
		return nil
	})

	return items, err
}

var fence = regexp.MustCompile("(?ms)^```([a-z0-9]*)\\s*\\n(.*?)^```")

// markdownBlocks returns each fenced code block of a PayloadsAllTheThings
// page: bash blocks as sh, powershell blocks as an unsupported language,
// everything else (python and template payloads) as python.
func markdownBlocks(name string) func(string) ([]Item, error) {
	return func(dir string) ([]Item, error) {
		data, err := readAll(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var items []Item
		for i, m := range fence.FindAllStringSubmatch(string(data), -1) {
			lang := "python"
			switch m[1] {
			case "bash", "sh":
				lang = "sh"
			case "ps1", "powershell":
				lang = "powershell"
			}
			items = append(items, single(name, fmt.Sprint(i), lang, "main", m[2]))
		}
		return items, nil
	}
}

// commandLines returns each line of a command-injection list as a one-line
// shell script.
func commandLines(name string) func(string) ([]Item, error) {
	return func(dir string) ([]Item, error) {
		data, err := readAll(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var items []Item
		for i, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			items = append(items, single(name, fmt.Sprint(i+1), "sh", "main.sh", line+"\n"))
		}
		return items, nil
	}
}

// CommandPayloads returns the raw lines of the command-injection lists, as
// fuzz seeds for the submission parser.
func CommandPayloads(dir string) ([]string, error) {
	var out []string
	for _, name := range []string{"patt_command_exec.txt", "patt_command-execution-unix.txt",
		"patt_linux-sensitive-files.txt"} {
		data, err := readAll(filepath.Join(dir, "hostile", name))
		if err != nil {
			return nil, err
		}
		out = append(out, strings.Split(strings.TrimSpace(string(data)), "\n")...)
	}

	return out, nil
}

// Typhon fills the slots of the Typhon pyjail payload templates so each
// becomes a complete Python program; see [TyphonSlots] for the values.
// Required names that are importable modules get an import line first.
func Typhon(dir string) ([]Item, error) {
	data, err := readAll(filepath.Join(dir, "typhon_pyjail_payloads.json"))
	if err != nil {
		return nil, err
	}
	categories, err := typhonCategories(data)
	if err != nil {
		return nil, err
	}

	cats := make([]string, 0, len(categories))
	for c := range categories {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	var items []Item
	for _, c := range cats {
		for i, entry := range categories[c] {
			if len(entry) == 0 {
				continue
			}
			required := ""
			if len(entry) > 1 {
				required = entry[1]
			}
			items = append(items, single("typhon", fmt.Sprintf("%s/%d", c, i), "python", "main.py",
				FillTyphon(entry[0], required)))
		}
	}

	return items, nil
}

// typhonCategories decodes the categories: most are lists of entries, and
// a few (python2) are objects of named lists, flattened here as
// "category/name".
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
