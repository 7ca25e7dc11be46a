package executor

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodexsec/nodex/services/sandbox-runner/internal/proto"
)

// corpusDir returns NODEX_CORPUS, or ../shared/corpus beside the repository.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NODEX_CORPUS")
	if dir == "" {
		root, err := filepath.Abs("../../../..")
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "..", "shared", "corpus")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("corpus not found at %s (set NODEX_CORPUS): %v", dir, err)
	}
	return dir
}

// readJSONL decodes every line of a plain or gzip JSON Lines file.
func readJSONL(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r *bufio.Scanner
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = bufio.NewScanner(gz)
	} else {
		r = bufio.NewScanner(f)
	}
	r.Buffer(make([]byte, 1<<20), 8<<20)
	var out []map[string]any
	for r.Scan() {
		var item map[string]any
		if err := json.Unmarshal(r.Bytes(), &item); err != nil {
			t.Fatalf("decoding %s: %v", path, err)
		}
		out = append(out, item)
	}
	return out
}

func str(item map[string]any, key string) string {
	s, _ := item[key].(string)
	return s
}

type corpusItem struct {
	id     string
	spec   Spec
	passed func(Result) bool
}

// benignSample takes every step-th item of the Python and JavaScript benign
// sets (every 2*step-th of MBPP). bashSample covers the bash set.
func benignSample(t *testing.T, step int) []corpusItem {
	dir := filepath.Join(corpusDir(t), "benign")
	exitedZero := func(r Result) bool { return r.Reason == ReasonExited && r.ExitCode == 0 }
	var items []corpusItem
	for i, it := range readJSONL(t, filepath.Join(dir, "HumanEval.jsonl.gz")) {
		if i%step != 0 {
			continue
		}
		code := str(it, "prompt") + str(it, "canonical_solution") + "\n" + str(it, "test") +
			"\n" + fmt.Sprintf("check(%s)\n", str(it, "entry_point"))
		items = append(items, corpusItem{str(it, "task_id"), codeSpec(RuntimePython, code), exitedZero})
	}
	for i, it := range readJSONL(t, filepath.Join(dir, "mbpp.jsonl.gz")) {
		if i%(2*step) != 0 {
			continue
		}
		var tests []string
		for _, s := range it["test_list"].([]any) {
			tests = append(tests, s.(string))
		}
		code := str(it, "code") + "\n" + str(it, "test_setup_code") + "\n" + strings.Join(tests, "\n")
		items = append(items, corpusItem{fmt.Sprint("mbpp/", it["task_id"]), codeSpec(RuntimePython, code), exitedZero})
	}
	// Known defects of the dataset: /112 and /155 have wrong canonical solutions
	// and /162 needs an npm package.
	broken := map[string]bool{"JavaScript/112": true, "JavaScript/155": true, "JavaScript/162": true}
	for i, it := range readJSONL(t, filepath.Join(dir, "humaneval-x_js.jsonl.gz")) {
		if i%step != 0 || broken[str(it, "task_id")] {
			continue
		}
		code := str(it, "prompt") + str(it, "canonical_solution") + "\n" + str(it, "test")
		items = append(items, corpusItem{str(it, "task_id"), codeSpec(RuntimeNode, code), func(r Result) bool {
			return exitedZero(r) && !strings.Contains(string(r.Stderr), "Assertion failed")
		}})
	}
	return items
}

func codeSpec(runtime, code string) Spec {
	name := "t.py"
	switch runtime {
	case RuntimeNode:
		name = "t.js"
	case RuntimeSh, RuntimeBash:
		name = "t.sh"
	}
	return Spec{Runtime: runtime, Entrypoint: name,
		Files: []proto.File{{Path: name, Data: []byte(code)}}, Limits: Limits{WallTime: 15 * time.Second}}
}

// runAll runs the items on the executor's slots and returns results by id.
func runAll(e *Executor, items []corpusItem) map[string]Result {
	var mu sync.Mutex
	out := map[string]Result{}
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.Run(context.Background(), it.spec)
			if err != nil {
				res.Reason, res.Error = "run error", err.Error()
			}
			mu.Lock()
			out[it.id] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func TestBenignCorpusSample(t *testing.T) {
	e := newTestExecutor(t, 2)
	items := benignSample(t, 8)
	results := runAll(e, items)
	for _, it := range items {
		if res := results[it.id]; !it.passed(res) {
			t.Errorf("%s: reason %s exit %d, stderr %q", it.id, res.Reason, res.ExitCode, tail(res.Stderr))
		}
	}
	t.Logf("%d benign items run", len(items))
}

// runtimeFor maps a hostile sample's language to a sandbox runtime.
var runtimeFor = map[string]string{
	"python": RuntimePython, "Python": RuntimePython, "javascript": RuntimeNode,
	"bash": RuntimeBash, "sh": RuntimeSh,
}

// TestHostileCorpusContained runs the hostile samples that are code in a
// runtime the sandbox has: each must end within its wall time plus a margin,
// leaving no process and no cgroup behind.
func TestHostileCorpusContained(t *testing.T) {
	e := newTestExecutor(t, 2)
	dir := filepath.Join(corpusDir(t), "hostile")
	var items []corpusItem
	for _, it := range readJSONL(t, filepath.Join(dir, "forkbombs.jsonl")) {
		if rt, ok := runtimeFor[str(it, "language")]; ok {
			items = append(items, corpusItem{id: str(it, "id"), spec: codeSpec(rt, str(it, "code"))})
		}
	}
	for i, it := range readJSONL(t, filepath.Join(dir, "redcode-exec_python.jsonl.gz")) {
		if i%10 == 0 {
			items = append(items, corpusItem{id: "redcode/" + str(it, "Index"),
				spec: codeSpec(RuntimePython, str(it, "Code"))})
		}
	}
	for i := range items {
		items[i].spec.Limits.WallTime = 5 * time.Second
	}
	start := time.Now()
	results := runAll(e, items)
	for _, it := range items {
		res := results[it.id]
		if res.WallTime > 7*time.Second || res.Reason == "run error" || res.Reason == ReasonSetupFailed {
			t.Errorf("%s: reason %s after %v: %s", it.id, res.Reason, res.WallTime, res.Error)
		}
	}
	if left := programProcesses(e); len(left) > 0 {
		t.Errorf("processes left under the program uids: %v", left)
	}
	if left := runCgroupsLeft(e); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
	t.Logf("%d hostile items contained in %v", len(items), time.Since(start))
}
