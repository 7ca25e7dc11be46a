package scan

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodexsec/nodex/libs/bundle"
)

func defaultScanner(t testing.TB) *Scanner {
	t.Helper()

	s, err := NewDefault()
	if err != nil {
		t.Fatalf("loading embedded rules: %v", err)
	}
	for _, lang := range []string{"python", "javascript", "sh"} {
		if s.Rules(lang) == nil {
			t.Fatalf("no embedded rule file for %s", lang)
		}
	}

	return s
}

func scanText(t testing.TB, s *Scanner, lang, src string) []bundle.Finding {
	t.Helper()

	name := map[string]string{"python": "main.py", "javascript": "main.js", "sh": "main.sh"}[lang]
	findings, err := s.Scan(lang, []bundle.File{{Name: name, Data: []byte(src)}})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}

	return findings
}

func ruleIDs(findings []bundle.Finding) []string {
	var ids []string
	for _, f := range findings {
		if !slices.Contains(ids, f.RuleID) {
			ids = append(ids, f.RuleID)
		}
	}

	return ids
}

// samples are test programs for a rule: each positive one must make the
// rule fire, and no negative one may.
type samples struct {
	Positive []string `json:"positive"`
	Negative []string `json:"negative"`
}

// loadSamples reads testdata/samples/<lang>.json, keyed by rule id.
func loadSamples(t *testing.T, lang string) map[string]samples {
	t.Helper()

	data, err := os.ReadFile(filepath.Join("testdata", "samples", lang+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]samples
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("decoding samples of %s: %v", lang, err)
	}

	return out
}

// TestRuleSamples runs every rule's samples from testdata. Each rule needs
// at least one positive and one negative sample, and each sample set must
// belong to a rule.
func TestRuleSamples(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)

	for _, lang := range []string{"python", "javascript", "sh"} {
		all := loadSamples(t, lang)
		for _, r := range s.Rules(lang).Rules {
			sm := all[r.ID]
			delete(all, r.ID)
			t.Run(r.ID, func(t *testing.T) {
				t.Parallel()
				if len(sm.Positive) == 0 || len(sm.Negative) == 0 {
					t.Fatalf("rule %s needs a positive and a negative sample in testdata", r.ID)
				}
				for i, src := range sm.Positive {
					if ids := ruleIDs(scanText(t, s, lang, src)); !slices.Contains(ids, r.ID) {
						t.Errorf("positive sample %d %q: rules %v fired, want %s", i, src, ids, r.ID)
					}
				}
				for i, src := range sm.Negative {
					if ids := ruleIDs(scanText(t, s, lang, src)); slices.Contains(ids, r.ID) {
						t.Errorf("negative sample %d %q: rule %s fired", i, src, r.ID)
					}
				}
			})
		}
		for id := range all {
			t.Errorf("%s samples for %s match no rule", lang, id)
		}
	}
}

func TestFindingFields(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)

	got := scanText(t, s, "python", "x = 1\n\nimport os\nos.system('id')\n")
	want := bundle.Finding{RuleID: "PY-PROC-001", Severity: "critical", File: "main.py", Line: 4,
		Message: `process spawning: "os.system"`}
	if !slices.Contains(got, want) {
		t.Errorf("findings %+v do not contain %+v", got, want)
	}
}

// TestObfuscationCases checks the obfuscation seen in real payloads, each
// case naming the rule that must fire.
func TestObfuscationCases(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)
	tests := []struct {
		name string
		lang string
		src  string
		want string
	}{
		{"concatenated getattr name", "python", "import os\ngetattr(os, 'sy' + 'st' + 'em')('id')\n", "PY-PROC-001"},
		{"concatenated import", "python", "m = __import__('o' + 's')\nm.system('id')\n", "PY-PROC-001"},
		{"chr-built import", "python", "__import__(chr(111)+chr(115)).popen('id')\n", "PY-PROC-001"},
		{"reversed name", "python", "import os\ngetattr(os, 'metsys'[::-1])('id')\n", "PY-PROC-001"},
		{"importlib alias", "python", "import importlib as il\nil.import_module('subprocess').call('id')\n", "PY-PROC-001"},
		{"builtins subscript", "python", "__builtins__['__imp' + 'ort__']('os').system('id')\n", "PY-PROC-001"},
		{"computed find_spec", "python", "from importlib.util import find_spec, module_from_spec\nspec = find_spec(input())\nm = module_from_spec(spec)\nspec.loader.exec_module(m)\n", "PY-IMPORT-002"},
		{"computed resolve_name", "python", "import pkgutil\nm = pkgutil.resolve_name(input())\n", "PY-IMPORT-002"},
		{"computed run_module", "python", "import runpy\nrunpy.run_module(input())\n", "PY-IMPORT-002"},
		{"computed getattr", "python", "name = input()\ngetattr(obj, name)()\n", "PY-ATTR-001"},
		{"base64 blob to exec", "python", "import base64\nexec(base64.b64decode('aW1wb3J0IG9zOyBvcy5zeXN0ZW0oImlkIik='))\n", "PY-EXEC-002"},
		{"base64 blob content", "python", "import base64\nexec(base64.b64decode('aW1wb3J0IG9zOyBvcy5zeXN0ZW0oImlkIik='))\n", "PY-PROC-001"},
		{"base64 through variable", "python", "from base64 import b64decode as d\np = d(blob)\nexec(p)\n", "PY-EXEC-002"},
		{"exec of a string literal", "python", "exec(\"import socket; socket.socket().connect(('127.0.0.1', 1))\")\n", "PY-NET-001"},
		{"hex payload", "python", "exec(bytes.fromhex('696d706f7274206f733b206f732e73797374656d28276964272920').decode())\n", "PY-PROC-001"},
		{"lambda subclasses walk", "python", "x = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'catch_warnings']\n", "PY-ESCAPE-001"},
		{"escaped string", "python", "getattr(__import__('\\x6fs'), 'system')('id')\n", "PY-PROC-001"},
		{"js concatenated require", "javascript", "const m = require('chi' + 'ld_pro' + 'cess');\nm.execSync('id');\n", "JS-PROC-001"},
		{"js template require", "javascript", "const cp = require(`child_process`);\ncp.exec('id');\n", "JS-PROC-001"},
		{"js bracket access", "javascript", "const cp = require('child_process');\ncp['ex' + 'ecSync']('id');\n", "JS-PROC-001"},
		{"js code in template substitution", "javascript", "const s = `${require('child_process').execSync('id')}`;\n", "JS-PROC-001"},
		{"js eval of atob", "javascript", "eval(atob('cmVxdWlyZSgiY2hpbGRfcHJvY2VzcyIpLmV4ZWNTeW5jKCJpZCIp'));\n", "JS-PROC-001"},
		{"sh base64 to shell", "sh", "echo Y2F0IC9ldGMvcGFzc3dk | base64 -d | bash\n", "SH-PIPE-001"},
		{"sh quoted command", "sh", "'c'\"url\" http://127.0.0.1/\n", "SH-NET-001"},
		{"sh command substitution in quotes", "sh", "echo \"$(cat /etc/shadow)\"\n", "SH-FILE-001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ids := ruleIDs(scanText(t, s, tt.lang, tt.src))
			if !slices.Contains(ids, tt.want) {
				t.Errorf("rules %v fired, want %s", ids, tt.want)
			}
		})
	}
}

// TestComputedImportCritical checks that each way of choosing an imported
// module at run time gives a critical finding at its line, naming the
// construct, and that the same calls with literal arguments give no
// critical finding.
func TestComputedImportCritical(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)
	tests := []struct {
		name   string
		src    string
		rule   string // "" when no critical finding may appear
		line   int
		detail string // part of the finding's message
	}{
		{"computed fromlist keyword", "x = 1\nm = __import__('os', fromlist=[name])\n",
			"PY-IMPORT-002", 2, "__import__ with a computed fromlist"},
		{"computed fromlist position", "m = __import__('xml', None, None, names)\n",
			"PY-IMPORT-002", 1, "__import__ with a computed fromlist"},
		{"computed package keyword", "import importlib\nm = importlib.import_module('.path', package=name)\n",
			"PY-IMPORT-002", 2, "importlib.import_module with a computed package"},
		{"computed package position", "from importlib import import_module\nm = import_module('.path', pkg)\n",
			"PY-IMPORT-002", 2, "importlib.import_module with a computed package"},
		{"computed name and package", "import importlib\nm = importlib.import_module('.' + x, package=p)\n",
			"PY-IMPORT-002", 2, "importlib.import_module with a computed name"},
		{"keywords unpacked", "import importlib\nm = importlib.import_module('json', **options)\n",
			"PY-IMPORT-002", 2, "importlib.import_module with a computed package"},
		{"find_spec computed package", "import importlib.util\ns = importlib.util.find_spec('.x', package=p)\n",
			"PY-IMPORT-002", 2, "importlib.util.find_spec with a computed package"},
		{"import through globals", "m = globals()['__builtins__'].__import__(name)\n",
			"PY-IMPORT-002", 1, "globals().__builtins__.__import__ with a computed name"},
		{"__import__ assigned", "f = __import__\nm = f(name)\n",
			"PY-IMPORT-003", 1, "__import__ used as a value"},
		{"import_module assigned", "import importlib\nimp = importlib.import_module\nm = imp(x)\n",
			"PY-IMPORT-003", 2, "importlib.import_module used as a value"},
		{"getattr of __import__", "import builtins\ng = getattr(builtins, '__import__')\n",
			"PY-IMPORT-003", 2, "builtins.__import__ used as a value"},
		{"__import__ mapped", "mods = list(map(__import__, names))\n",
			"PY-IMPORT-003", 1, "__import__ used as a value"},
		{"import_module mapped", "import importlib\nmods = list(map(importlib.import_module, mods))\n",
			"PY-IMPORT-003", 2, "importlib.import_module used as a value"},
		{"__import__ through globals", "g = globals()['__builtins__'].__import__\n",
			"PY-IMPORT-003", 1, "globals().__builtins__.__import__ used as a value"},
		{"import_module through __dict__", "import importlib\nm = importlib.__dict__['import_module'](name)\n",
			"PY-IMPORT-002", 2, "importlib.import_module with a computed name"},
		{"import_module value through __dict__", "import importlib\nf = importlib.__dict__['import_module']\n",
			"PY-IMPORT-003", 2, "importlib.import_module used as a value"},
		{"__import__ in a list", "m = [__import__][0](name)\n",
			"PY-IMPORT-003", 1, "__import__ used as a value"},
		{"__dict__.get of __import__", "import builtins\nf = builtins.__dict__.get('__import__'); f(name)\n",
			"PY-IMPORT-003", 2, "builtins.__dict__.__import__ used as a value"},
		{"vars subscript of __import__", "import builtins\nf = vars(builtins)['__import__']\n",
			"PY-IMPORT-003", 2, "builtins.__dict__.__import__ used as a value"},
		{"vars get of __import__", "import builtins\nf = vars(builtins).get('__import__', None)\n",
			"PY-IMPORT-003", 2, "builtins.__dict__.__import__ used as a value"},
		{"vars get called", "import importlib\nm = vars(importlib).get('import_module')(name)\n",
			"PY-IMPORT-002", 2, "importlib.import_module with a computed name"},
		{"globals get of builtins", "m = globals().get('__builtins__').__import__(name)\n",
			"PY-IMPORT-002", 1, "globals().__builtins__.__import__ with a computed name"},
		{"attrgetter applied", "import operator, builtins\nm = operator.attrgetter('__import__')(builtins)(name)\n",
			"PY-IMPORT-002", 2, "builtins.__import__ with a computed name"},
		{"attrgetter applied as value", "from operator import attrgetter\nimport builtins\nf = attrgetter('__import__')(builtins)\n",
			"PY-IMPORT-003", 3, "builtins.__import__ used as a value"},
		{"attrgetter kept", "import operator\nget_import = operator.attrgetter('__import__')\n",
			"PY-IMPORT-003", 2, "operator.attrgetter.__import__ used as a value"},
		{"exec of concatenated import", "x = 1\nexec('import ' + name)\n",
			"PY-IMPORT-004", 2, "exec('import ' ...)"},
		{"exec of f-string import", "exec(f'import {m}')\n",
			"PY-IMPORT-004", 1, "exec('import {m}' ...)"},
		{"exec of percent-formatted import", "exec('from %s import *' % m)\n",
			"PY-IMPORT-004", 1, "exec('from %s import *' ...)"},
		{"exec of str.format import", "exec('import {}'.format(m))\n",
			"PY-IMPORT-004", 1, "exec('import {}' ...)"},
		{"exec of split keyword", "exec('imp' + 'ort ' + m)\n",
			"PY-IMPORT-004", 1, "exec('import ' ...)"},
		{"exec of built variable", "code = 'import ' + name\n\nexec(code)\n",
			"PY-IMPORT-004", 3, "exec('import ' ...)"},
		{"compile of built import", "c = compile('from ' + m + ' import *', '<string>', 'exec')\n",
			"PY-IMPORT-004", 1, "compile('from ' ...)"},
		{"eval of built __import__", "v = eval(\"__import__('\" + m + \"')\")\n",
			"PY-IMPORT-004", 1, "eval('__import__(''"},
		{"console push of built import", "import code\ncode.InteractiveConsole().push('import ' + name)\n",
			"PY-IMPORT-004", 2, "code.InteractiveConsole().push('import ' ...)"},
		{"console push line keyword", "import code\ncode.InteractiveConsole().push(line='import ' + name)\n",
			"PY-IMPORT-004", 2, "code.InteractiveConsole().push('import ' ...)"},
		{"console runsource of built import", "import code\nc = code.InteractiveConsole()\nc.runsource('from ' + m + ' import *')\n",
			"PY-IMPORT-004", 3, "code.InteractiveConsole().runsource('from ' ...)"},
		{"compile_command of built import", "import code\nc = code.compile_command('import ' + name)\n",
			"PY-IMPORT-004", 2, "code.compile_command('import ' ...)"},
		{"exec of %c formatted import", "exec('%c%s' % (105, 'mport ' + name))\n",
			"PY-IMPORT-004", 1, "exec('import …' ...)"},
		{"exec of %s formatted pieces", "exec('%s%s %s' % ('imp', 'ort', name))\n",
			"PY-IMPORT-004", 1, "exec('import …' ...)"},
		{"exec of %c then concatenation", "exec('%c' % 0x69 + 'mport ' + name)\n",
			"PY-IMPORT-004", 1, "exec('import ' ...)"},
		{"exec of partly constant join", "exec(''.join(['imp', 'ort ', name]))\n",
			"PY-IMPORT-004", 1, "exec('import …' ...)"},
		{"exec of joined chr pieces", "exec(''.join([chr(105), 'mport ', name]))\n",
			"PY-IMPORT-004", 1, "exec('import …' ...)"},
		{"import of formatted constant", "m = __import__('%sypes' % 'ct')\n",
			"PY-NATIVE-001", 1, "ctypes"},
		{"exec of joined list variable", "code = ['import ', name]\nexec(''.join(code))\n",
			"PY-IMPORT-004", 2, "exec('import ' ...)"},
		{"exec of spelled list variable", "code = ['imp', 'ort ', name]\nexec(''.join(code))\n",
			"PY-IMPORT-004", 2, "exec('import' ...)"},
		{"exec of variable chain", "head = 'import '\ncode = head + name\nexec(code + '\\n')\n",
			"PY-IMPORT-004", 3, "exec('import ' ...)"},
		{"exec of spelled pieces", "exec('imp' + x + 'ort os')\n",
			"PY-IMPORT-004", 1, "exec('import' ...)"},
		{"eval of spelled __import__", "eval('__imp' + sep + 'ort__(m)')\n",
			"PY-IMPORT-004", 1, "eval('import' ...)"},
		{"literal import", "m = __import__('os')\n", "", 0, ""},
		{"literal import_module", "import importlib\nm = importlib.import_module('json')\n", "", 0, ""},
		{"literal name keyword", "import importlib\nm = importlib.import_module(name='json')\n", "", 0, ""},
		{"literal fromlist", "m = __import__('os', fromlist=['path'])\n", "", 0, ""},
		{"literal fromlist position", "m = __import__('os', globals(), locals(), ('path',), 0)\n", "", 0, ""},
		{"empty fromlist", "m = __import__('os', None, None, [], 0)\n", "", 0, ""},
		{"literal package", "import importlib\nm = importlib.import_module('.sub', package='mypkg')\n", "", 0, ""},
		{"import_module imported", "from importlib import import_module\nm = import_module('json')\n", "", 0, ""},
		{"import_module fallback", "try:\n    from importlib import import_module\nexcept ImportError:\n    import_module = None\n", "", 0, ""},
		{"getattr import called", "import builtins\nm = getattr(builtins, '__import__')('json')\n", "", 0, ""},
		{"method named import_module", "class Finder:\n    def load(self, name):\n        return self.import_module(name)\n", "", 0, ""},
		{"vars get of a literal import", "import builtins\nm = vars(builtins).get('__import__')('json')\n", "", 0, ""},
		{"attrgetter literal import", "import operator, builtins\nm = operator.attrgetter('__import__')(builtins)('json')\n", "", 0, ""},
		{"attrgetter of a plain attribute", "import operator\nkey = operator.attrgetter('name')\nprint(sorted(items, key=key))\n", "", 0, ""},
		{"vars of arguments", "opts = vars(args)\nverbose = vars(args).get('verbose', False)\n", "", 0, ""},
		{"dict get of import key", "cfg = {}\nv = cfg.get('__import__')\n", "", 0, ""},
		{"console push of built expression", "import code\ncode.InteractiveConsole().push('x = ' + value)\n", "", 0, ""},
		{"console push of constant import", "import code\nconsole = code.InteractiveConsole()\nconsole.push('import json')\n", "", 0, ""},
		{"exec of formatted assignment", "exec('x = %d' % n)\n", "", 0, ""},
		{"exec of formatted repr", "exec('%s = %r' % (key, value))\n", "", 0, ""},
		{"exec of joined expression", "exec('; '.join(['x = 1', line]))\n", "", 0, ""},
		{"import of formatted literal", "m = __import__('%s.%s' % ('json', 'decoder'))\n", "", 0, ""},
		{"exec of pieces spelling a longer word", "exec('imp' + x + 'ortant')\n", "", 0, ""},
		{"exec of joined statements", "lines = ['x = 1', y]\nexec('\\n'.join(lines))\n", "", 0, ""},
		{"exec of variable with import word", "x = 'important'\nexec('print(' + x + ')')\n", "", 0, ""},
		{"exec of self-referencing variables", "a = b + 'x'\nb = a\nexec(a)\n", "", 0, ""},
		{"exec of constant import", "exec('import json')\n", "", 0, ""},
		{"exec of built expression", "exec('x = ' + expr)\n", "", 0, ""},
		{"regex built with from", "import re\np = re.compile('from ' + word)\n", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var critical []bundle.Finding
			for _, f := range scanText(t, s, "python", tt.src) {
				if f.Severity == "critical" {
					critical = append(critical, f)
				}
			}
			if tt.rule == "" {
				if len(critical) > 0 {
					t.Errorf("critical findings %+v, want none", critical)
				}
				return
			}
			if !slices.ContainsFunc(critical, func(f bundle.Finding) bool {
				return f.RuleID == tt.rule && f.Line == tt.line && strings.Contains(f.Message, tt.detail)
			}) {
				t.Errorf("critical findings %+v, want %s on line %d with %q", critical, tt.rule, tt.line, tt.detail)
			}
		})
	}
}

func TestFindingsCapped(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)
	src := ""
	for i := range 500 {
		src += fmt.Sprintf("eval('%d')\n", i)
	}

	if got := len(scanText(t, s, "python", src)); got != MaxFindingsPerFile {
		t.Errorf("got %d findings, want the cap of %d", got, MaxFindingsPerFile)
	}
}

func TestScanUnknownLanguage(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)
	if _, err := s.Scan("ruby", []bundle.File{{Name: "a.rb", Data: []byte("x")}}); err == nil {
		t.Error("Scan of ruby: error = nil, want an error")
	}
}
