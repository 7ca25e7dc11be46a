package scan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
)

// Severities in increasing order, as the policy reads them.
var severities = []string{"info", "low", "medium", "high", "critical"}

// RuleFile is one language's rule set, as stored in rules/<language>.json.
type RuleFile struct {
	// Language is python, javascript or sh.
	Language string `json:"language"`
	// Decoders are call names (globs) whose result counts as decoded data
	// for the encoded_sinks matcher: base64, hex, zlib and the like.
	Decoders []string `json:"decoders"`
	// CodeSinks are call names (globs) that run a string as code, such as
	// eval and exec. A constant string passed to one is scanned as code of
	// the same language.
	CodeSinks []string `json:"code_sinks"`
	// Rules are checked in order; each may fire several times.
	Rules []Rule `json:"rules"`
}

// Rule is one static check. It fires when any of its matchers matches.
// Glob patterns are exact names, a prefix followed by "*", or "*." and a
// suffix.
type Rule struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Message  string `json:"message"`

	// Calls (globs) match resolved dotted names that are called or referenced,
	// after import aliases, assignments, getattr with a constant name and
	// subscripts with a constant key are followed (os.system, eval).
	Calls []string `json:"calls,omitempty"`
	// Values (globs) match resolved names that are read as a value: not
	// called, imported or assigned to, such as a function passed to map or
	// stored in a variable.
	Values []string `json:"values,omitempty"`
	// Imports match imported module names, from import statements,
	// __import__, importlib.import_module, require and import(): a pattern
	// matches the module, its submodules, and names imported from it
	// ("os.system" for "from os import system"), or works as a glob.
	Imports []string `json:"imports,omitempty"`
	// Names match identifiers, attribute names and string constants
	// exactly (__subclasses__ as a name or as '__subclasses__').
	Names []string `json:"names,omitempty"`
	// ObfuscatedNames match string values that were built from several
	// pieces (concatenation, chr, reversal, join, decoding) and equal one
	// of these names: a name hidden from a plain text search.
	ObfuscatedNames []string `json:"obfuscated_names,omitempty"`
	// Strings are regular expressions matched against string values,
	// folded where they were built from pieces, and against shell words.
	Strings []string `json:"strings,omitempty"`
	// ComputedArgs match calls whose given argument is not a literal, such
	// as getattr(obj, name) with a computed name or
	// __import__("os", fromlist=[name]) with a computed fromlist.
	ComputedArgs []ComputedArg `json:"computed_args,omitempty"`
	// EncodedSinks match calls (globs) that receive decoded data: a decoder
	// call in the arguments, or a variable assigned from one.
	EncodedSinks []string `json:"encoded_sinks,omitempty"`
	// Commands match shell command words (the basename of the command).
	Commands []string `json:"commands,omitempty"`
	// Lines are regular expressions matched against each logical source
	// line with comments removed.
	Lines []string `json:"lines,omitempty"`
	// Checks name built-in matchers: "fork_bomb" (a shell function that
	// pipes into itself in the background).
	Checks []string `json:"checks,omitempty"`
	// BuiltCode matches code built at run time and passed to a code sink
	// when the text it is built from matches a pattern.
	BuiltCode *BuiltCode `json:"built_code,omitempty"`

	strings []*regexp.Regexp
	lines   []*regexp.Regexp
	calls   globSet
	values  globSet
	names   map[string]bool
}

// globSet matches names against glob patterns: exact patterns through a
// map, the few wildcard ones in order.
type globSet struct {
	exact    map[string]bool
	wildcard []string
}

func newGlobSet(patterns []string) globSet {
	g := globSet{exact: map[string]bool{}}
	for _, p := range patterns {
		if strings.HasPrefix(p, "*.") || strings.HasSuffix(p, "*") {
			g.wildcard = append(g.wildcard, p)
		} else {
			g.exact[p] = true
		}
	}

	return g
}

func (g globSet) match(name string) bool {
	return g.exact[name] || anyGlob(g.wildcard, name)
}

// BuiltCode matches a call of one of Sinks (globs) whose code argument is
// not a constant string. The code argument is the first positional one or
// the keyword source, or line for InteractiveConsole.push. The call
// matches when the argument's text matches one of Patterns or spells one
// of Spelled. Its text is the string literals and partly folded values in
// it, and in the values assigned to the variables it reads, followed from
// assignment to assignment. Partial folding joins the constant parts of
// "+" chains, "%" formatting and "".join([...]), so
// "".join(["imp", "ort ", name]) reads "import …". A constant code string
// is left to the scan of nested code.
type BuiltCode struct {
	Sinks    []string `json:"sinks"`
	Patterns []string `json:"patterns"`
	// Spelled are words that match when two or more string literals of
	// one argument or assigned value spell them. The literals are read in
	// order, without the computed text between them, and the word must
	// have no letter or digit next to it. So ["imp", x, "ort "] spells
	// "import".
	Spelled []string `json:"spelled,omitempty"`

	patterns []*regexp.Regexp
}

// ComputedArg names a call and an argument of it that must be a literal.
// The argument is found by its 1-based position, or in Python by its
// keyword when Keyword is set. An unpacked *args or **kwargs that may
// supply the argument counts as computed.
type ComputedArg struct {
	Call    string `json:"call"`
	Arg     int    `json:"arg"`
	Keyword string `json:"keyword,omitempty"`
}

var knownChecks = []string{"fork_bomb"}

// ParseRuleFile decodes and validates a rule file.
func ParseRuleFile(data []byte) (*RuleFile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rf RuleFile
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("decoding rule file: %w", err)
	}

	seen := map[string]bool{}
	for i := range rf.Rules {
		r := &rf.Rules[i]
		if err := r.compile(); err != nil {
			return nil, fmt.Errorf("rule %d %q of %s: %w", i, r.ID, rf.Language, err)
		}
		if seen[r.ID] {
			return nil, fmt.Errorf("rule id %q appears twice in %s", r.ID, rf.Language)
		}
		seen[r.ID] = true
	}

	return &rf, nil
}

func (r *Rule) compile() error {
	switch {
	case r.ID == "":
		return fmt.Errorf("missing id")
	case !slices.Contains(severities, r.Severity):
		return fmt.Errorf("severity %q is not one of %s", r.Severity, strings.Join(severities, ", "))
	case r.Message == "":
		return fmt.Errorf("missing message")
	}
	for _, c := range r.Checks {
		if !slices.Contains(knownChecks, c) {
			return fmt.Errorf("unknown check %q", c)
		}
	}
	for _, c := range r.ComputedArgs {
		if c.Arg < 1 {
			return fmt.Errorf("computed_args for %q: argument position %d, want 1 or more", c.Call, c.Arg)
		}
	}

	r.calls = newGlobSet(r.Calls)
	r.values = newGlobSet(r.Values)
	r.names = map[string]bool{}
	for _, n := range r.Names {
		r.names[n] = true
	}

	var err error
	if r.strings, err = compileAll(r.Strings); err != nil {
		return err
	}
	if r.lines, err = compileAll(r.Lines); err != nil {
		return err
	}
	if b := r.BuiltCode; b != nil {
		if len(b.Sinks) == 0 || len(b.Patterns) == 0 {
			return fmt.Errorf("built_code: missing sinks or patterns; list at least one of each")
		}
		b.patterns, err = compileAll(b.Patterns)
	}

	return err
}

func compileAll(patterns []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, 0, len(patterns))
	for _, p := range patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("compiling pattern %q: %w", p, err)
		}
		out = append(out, re)
	}

	return out, nil
}

// LoadRules reads every <language>.json file in fsys.
func LoadRules(fsys fs.FS) (map[string]*RuleFile, error) {
	names, err := fs.Glob(fsys, "*.json")
	if err != nil {
		return nil, fmt.Errorf("listing rule files: %w", err)
	}

	sets := make(map[string]*RuleFile, len(names))
	for _, name := range names {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("reading rule file %s: %w", name, err)
		}
		rf, err := ParseRuleFile(data)
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", name, err)
		}
		if name != rf.Language+".json" {
			return nil, fmt.Errorf("rule file %s declares language %q; name it %s.json",
				name, rf.Language, rf.Language)
		}
		sets[rf.Language] = rf
	}

	return sets, nil
}

// globMatch reports whether name matches pattern. A plain pattern must be
// equal. A pattern ending in "*" matches names with that prefix, so
// "os.exec*" matches "os.execv". A pattern "*.suffix" matches names ending
// in ".suffix".
func globMatch(pattern, name string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+suffix)
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}

	return pattern == name
}

func anyGlob(patterns []string, name string) bool {
	for _, p := range patterns {
		if globMatch(p, name) {
			return true
		}
	}

	return false
}

// moduleMatch reports whether module is pattern or a submodule of it.
func moduleMatch(pattern, module string) bool {
	return module == pattern || strings.HasPrefix(module, pattern+".") ||
		strings.HasPrefix(module, pattern+"/") || module == "node:"+pattern
}
