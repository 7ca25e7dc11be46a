package scan

import (
	"strings"
)

// facts are the analysis results of one file, which the rules match on.
type facts struct {
	refs     []refFact
	imports  []valueFact
	names    []valueFact
	strings  []stringFact
	commands []valueFact
	lines    []valueFact
	checks   []valueFact
	// pieces are the string literals and constant "+" prefixes, in token
	// order, that code built at run time is searched for.
	pieces []pieceFact
	// variables are the names read as variables, not as attributes, at
	// their token indexes, in token order.
	variables []pieceFact
	// assigned maps a name to the token ranges of the values assigned to
	// it with "NAME = value".
	assigned map[string][][2]int
}

// pieceFact is literal text at token index at: a string literal as
// written (an f-string with its {} fields), or the constant start of a
// "+" chain ("imp" + "ort " + name gives "import ").
type pieceFact struct {
	value string
	at    int
	// literal marks a string literal as written, not a folded value.
	literal bool
}

// refFact is a resolved dotted name at a call or reference.
type refFact struct {
	name string
	line int
	call bool
	// bound means the name is imported or assigned to here, not read.
	bound bool
	args  []argFact
}

// argFact describes one argument of a call.
type argFact struct {
	keyword  string // the parameter name of a Python keyword argument, "" for others
	unpacked string // "*" or "**" for a Python argument unpacked from a sequence or mapping
	constant bool   // the argument folds to a constant string
	value    string // the constant's value
	// literal means the source fixes the value: a constant string, a
	// number, None, True, False, or a list, tuple or set of literals.
	literal bool
	decoded bool // a decoder call or a variable assigned from one is in it
	// start and end are the token range of the value, without the
	// keyword or the stars.
	start, end int
	// name is the variable when the value is one name, else "".
	name string
}

type valueFact struct {
	value string
	line  int
}

// stringFact is a string value; folded means it was built from several
// pieces or decoded, rather than written as one literal.
type stringFact struct {
	value  string
	line   int
	folded bool
	// literals are the source literals a folded value was built from.
	literals []string
}

// analyzer walks the tokens of a Python or JavaScript file.
type analyzer struct {
	toks     []token
	lang     string
	aliases  map[string]string // local name -> dotted name it stands for
	star     []string          // modules imported with "from m import *"
	decoders []string
	tainted  map[string]bool // names assigned from a decoder call
	facts    facts

	match    []int            // closing bracket of each opening one
	argsMemo map[int][][2]int // splitArgs results by '(' index
	foldMemo []foldedResult   // fold results by start index
}

type foldedResult struct {
	f    folded
	ok   bool
	done bool
}

func analyzeCode(lang, src string, decoders []string) *facts {
	a := &analyzer{lang: lang, aliases: map[string]string{}, decoders: decoders,
		tainted: map[string]bool{}, argsMemo: map[int][][2]int{}}
	if lang == "python" {
		a.toks = tokenizePython(src)
	} else {
		a.toks = tokenizeJavaScript(src)
	}
	a.matchBrackets()
	a.foldMemo = make([]foldedResult, len(a.toks))
	a.facts.lines = logicalLines(src, lang)

	a.collectRefs()
	a.collectStrings()
	a.collectPieces()
	for i, t := range a.toks {
		if t.kind == tokName {
			a.facts.names = append(a.facts.names, valueFact{value: t.text, line: t.line})
			if !a.tok(i-1).is(tokOp, ".") && !a.tok(i-1).is(tokOp, "?.") {
				a.facts.variables = append(a.facts.variables, pieceFact{value: t.text, at: i})
			}
		}
	}

	return &a.facts
}

// logicalLines returns the source lines with comments cut, for line rules.
func logicalLines(src, lang string) []valueFact {
	var out []valueFact
	for i, line := range strings.Split(src, "\n") {
		if lang == "python" {
			if j := strings.Index(line, "#"); j >= 0 && !strings.ContainsAny(line[:j], `'"`) {
				line = line[:j]
			}
		}
		if strings.TrimSpace(line) != "" {
			out = append(out, valueFact{value: line, line: i + 1})
		}
	}

	return out
}

func (a *analyzer) tok(i int) token {
	if i >= 0 && i < len(a.toks) {
		return a.toks[i]
	}

	return token{}
}

// statementStart reports whether token i begins a statement.
func (a *analyzer) statementStart(i int) bool {
	prev := a.tok(i - 1)
	return i == 0 || prev.kind == tokNewline || prev.is(tokOp, ";") || prev.is(tokOp, ":") ||
		prev.is(tokOp, "{") || prev.is(tokOp, "}")
}

func (a *analyzer) addImport(module string, line int) {
	a.facts.imports = append(a.facts.imports, valueFact{value: module, line: line})
}

// resolveHead maps the first element of a dotted name through the alias
// table, so "sp.run" after "import subprocess as sp" becomes "subprocess.run".
func (a *analyzer) resolveHead(name string) string {
	head, rest, hasRest := strings.Cut(name, ".")
	target, ok := a.aliases[head]
	if !ok {
		return name
	}
	if hasRest {
		return target + "." + rest
	}

	return target
}

// dottedAt reads NAME(.NAME)* at i and returns it with the index after it.
// It stops once the name is longer than maxNameLength, so reading from
// every token of a long chain stays linear in total.
func (a *analyzer) dottedAt(i int) (string, int) {
	if a.tok(i).kind != tokName {
		return "", i
	}
	parts := []string{a.tok(i).text}
	length := len(parts[0])
	j := i + 1
	for a.tok(j).is(tokOp, ".") && a.tok(j+1).kind == tokName && length <= maxNameLength {
		parts = append(parts, a.tok(j+1).text)
		length += 1 + len(a.tok(j+1).text)
		j += 2
	}

	return strings.Join(parts, "."), j
}

// matchBrackets fills a.match: for each opening bracket, the index of the
// bracket that closes it, or the last token when none does. One pass with a
// stack keeps every later lookup O(1), so deeply nested hostile input costs
// linear time.
func (a *analyzer) matchBrackets() {
	a.match = make([]int, len(a.toks))
	var stack []int
	for j, t := range a.toks {
		a.match[j] = -1
		if t.kind != tokOp {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			stack = append(stack, j)
		case ")", "]", "}":
			if n := len(stack); n > 0 {
				a.match[stack[n-1]] = j
				stack = stack[:n-1]
			}
		}
	}
	for _, open := range stack {
		a.match[open] = len(a.toks) - 1
	}
}

// closing returns the index of the bracket that closes the one at open, or
// the last token.
func (a *analyzer) closing(open int) int {
	if open < 0 || open >= len(a.match) || a.match[open] < 0 {
		return len(a.toks) - 1
	}

	return a.match[open]
}

// splitArgs returns the token ranges [start, end) of the arguments of the
// call whose '(' is at open. Nested brackets are skipped through the match
// table, and results are cached, so each call is split once.
func (a *analyzer) splitArgs(open int) [][2]int {
	if args, ok := a.argsMemo[open]; ok {
		return args
	}
	end := a.closing(open)
	var args [][2]int
	start := open + 1
	for j := open + 1; j < end; j++ {
		t := a.toks[j]
		switch {
		case t.kind != tokOp:
		case t.text == "(" || t.text == "[" || t.text == "{":
			j = a.closing(j)
		case t.text == ",":
			args = append(args, [2]int{start, j})
			start = j + 1
		}
	}
	if start < end {
		args = append(args, [2]int{start, end})
	}
	a.argsMemo[open] = args

	return args
}
