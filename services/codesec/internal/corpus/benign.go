package corpus

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
)

// Benign returns every benign program as a complete submission, built the
// way the corpus README runs each item:
//
//   - HumanEval: prompt + canonical_solution + test + check(entry_point)
//   - MBPP: code + test_setup_code + test_list
//   - HumanEval-X JavaScript: prompt + canonical_solution + test
//   - Exercism bash: the reference solution as its solution_file
func Benign(dir string) ([]Item, error) {
	var items []Item
	loaders := []func(string) ([]Item, error){humanEval, mbpp, humanEvalJS, exercismBash}
	for _, load := range loaders {
		set, err := load(filepath.Join(dir, "benign"))
		if err != nil {
			return nil, err
		}
		items = append(items, set...)
	}

	return items, nil
}

func humanEval(dir string) ([]Item, error) {
	var items []Item
	err := readJSONL(filepath.Join(dir, "HumanEval.jsonl.gz"), func(line []byte) error {
		var r struct {
			TaskID, Prompt, Test string
			CanonicalSolution    string `json:"canonical_solution"`
			EntryPoint           string `json:"entry_point"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		code := r.Prompt + r.CanonicalSolution + "\n" + r.Test + "\n" +
			fmt.Sprintf("check(%s)\n", r.EntryPoint)
		items = append(items, single("HumanEval", r.TaskID, "python", "main.py", code))
		return nil
	})

	return items, err
}

func mbpp(dir string) ([]Item, error) {
	var items []Item
	err := readJSONL(filepath.Join(dir, "mbpp.jsonl.gz"), func(line []byte) error {
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
		items = append(items, single("mbpp", fmt.Sprint(r.TaskID), "python", "main.py", code))
		return nil
	})

	return items, err
}

func humanEvalJS(dir string) ([]Item, error) {
	var items []Item
	err := readJSONL(filepath.Join(dir, "humaneval-x_js.jsonl.gz"), func(line []byte) error {
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
		items = append(items, single("humaneval-x_js", r.TaskID, "javascript", "main.js", code))
		return nil
	})

	return items, err
}

func exercismBash(dir string) ([]Item, error) {
	var items []Item
	err := readJSONL(filepath.Join(dir, "exercism_bash.jsonl.gz"), func(line []byte) error {
		var r struct {
			Slug         string `json:"slug"`
			SolutionFile string `json:"solution_file"`
			Solution     string `json:"solution"`
		}
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		name := filepath.Base(r.SolutionFile)
		items = append(items, single("exercism_bash", r.Slug, "sh", name, r.Solution))
		return nil
	})

	return items, err
}
