package scan

import "strings"

// maxNameLength bounds a resolved dotted name.
const maxNameLength = 256

// pendingCall is a call whose argument facts are filled in once every
// decoder call position is known.
type pendingCall struct {
	fact int // index into facts.refs
	open int // index of the '(' token
}

// assignment is "NAME = expression", kept to spread taint from decoders.
type assignment struct {
	name       string
	start, end int
}

// refPass walks the tokens forward once: it follows imports and assignments
// into the alias table as they appear, and records every resolved dotted
// name, with calls, at its position.
type refPass struct {
	*analyzer
	calls       []pendingCall
	assignments []assignment
	refIndex    []int        // token index of each facts.refs entry
	unresolved  map[int]bool // '(' indexes whose specialCall failed
	importEnd   int          // index after the import statement being read
}

func (a *analyzer) collectRefs() {
	p := &refPass{analyzer: a, unresolved: map[int]bool{}}
	for i := 0; i < len(a.toks); i++ {
		if a.statementStart(i) {
			p.statement(i)
		}
		t := a.tok(i)
		prev := a.tok(i - 1)
		if t.kind != tokName || prev.is(tokOp, ".") || prev.is(tokOp, "?.") || a.isDefinition(i) {
			continue
		}
		p.chainAt(i)
	}
	p.finishCalls()
}

// isDefinition reports whether the name at i is being defined, not used.
func (a *analyzer) isDefinition(i int) bool {
	prev := a.tok(i - 1)
	if prev.kind != tokName {
		return false
	}
	switch prev.text {
	case "def", "class", "function", "as":
		return true
	}

	return false
}

// statement handles imports and assignments that begin at i.
func (p *refPass) statement(i int) {
	t := p.tok(i)
	if t.kind != tokName {
		return
	}
	switch {
	case p.lang == "python" && (t.text == "import" || t.text == "from"):
		p.importEnd = p.statementEnd(i)
		p.pythonImport(i)
	case p.lang == "javascript" && t.text == "import" && !p.tok(i+1).is(tokOp, "("):
		p.importEnd = p.statementEnd(i)
		p.jsImport(i)
	case p.lang == "javascript" && (t.text == "const" || t.text == "let" || t.text == "var"):
		p.assign(i + 1)
	default:
		p.assign(i)
	}
}

// assign records "NAME = ref" aliases and "{a, b: c} = ref" destructuring.
func (p *refPass) assign(i int) {
	if p.tok(i).is(tokOp, "{") {
		p.destructure(i)
		return
	}
	if p.tok(i).kind != tokName || !p.tok(i+1).is(tokOp, "=") {
		return
	}
	name := p.tok(i).text
	end := p.statementEnd(i + 2)
	p.assignments = append(p.assignments, assignment{name: name, start: i + 2, end: end})

	if ref, j, ok := p.refAt(i+2, false); ok && j >= end {
		p.aliases[name] = ref
	}
}

func (p *refPass) destructure(open int) {
	close := p.closing(open)
	if !p.tok(close+1).is(tokOp, "=") {
		return
	}
	ref, _, ok := p.refAt(close+2, false)
	if !ok {
		return
	}
	for j := open + 1; j < close; j++ {
		if p.tok(j).kind != tokName || p.tok(j-1).is(tokOp, ":") {
			continue
		}
		local := p.tok(j).text
		if p.tok(j+1).is(tokOp, ":") && p.tok(j+2).kind == tokName {
			local = p.tok(j + 2).text
		}
		p.aliases[local] = ref + "." + p.tok(j).text
	}
}

func (p *refPass) statementEnd(i int) int {
	for j := i; j < len(p.toks); j++ {
		t := p.toks[j]
		if t.kind == tokNewline || t.is(tokOp, ";") {
			return j
		}
		if t.kind == tokOp && (t.text == "(" || t.text == "[" || t.text == "{") {
			j = p.closing(j)
		}
	}

	return len(p.toks)
}

func (p *refPass) pythonImport(i int) {
	line := p.tok(i).line
	end := p.statementEnd(i)
	if p.tok(i).text == "import" {
		for _, item := range p.importItems(i+1, end) {
			p.addImport(item[0], line)
			if item[1] != "" {
				p.aliases[item[1]] = item[0]
			} else {
				head, _, _ := strings.Cut(item[0], ".")
				p.aliases[head] = head
			}
		}
		return
	}

	j := i + 1
	for p.tok(j).is(tokOp, ".") || p.tok(j).is(tokOp, "...") {
		j++ // relative import: the package is local code
	}
	module, j := p.dottedAt(j)
	if module == "" || !p.tok(j).is(tokName, "import") {
		return
	}
	p.addImport(module, line)
	if p.tok(j+1).is(tokOp, "*") {
		p.star = append(p.star, module)
		return
	}
	for _, item := range p.importItems(j+1, end) {
		p.addImport(module+"."+item[0], line)
		local := item[1]
		if local == "" {
			local = item[0]
		}
		p.aliases[local] = module + "." + item[0]
	}
}

// importItems reads "a.b as c, d" into {name, alias} pairs.
func (p *refPass) importItems(i, end int) [][2]string {
	var items [][2]string
	for j := i; j < end; j++ {
		name, next := p.dottedAt(j)
		if name == "" {
			continue
		}
		alias := ""
		if p.tok(next).is(tokName, "as") && p.tok(next+1).kind == tokName {
			alias = p.tok(next + 1).text
			next += 2
		}
		items = append(items, [2]string{name, alias})
		j = next
	}

	return items
}

func (p *refPass) jsImport(i int) {
	end := p.statementEnd(i)
	from := -1
	for j := i + 1; j < end; j++ {
		if p.tok(j).kind == tokString {
			from = j
		}
	}
	if from < 0 {
		return
	}
	module := normalizeModule(p.tok(from).text)
	p.addImport(module, p.tok(i).line)

	for j := i + 1; j < from; j++ {
		t := p.tok(j)
		switch {
		case t.is(tokOp, "*") && p.tok(j+1).is(tokName, "as"):
			p.aliases[p.tok(j+2).text] = module
			j += 2
		case t.is(tokOp, "{"):
			p.jsNamedImports(j, module)
			j = p.closing(j)
		case t.kind == tokName && t.text != "from" && t.text != "type":
			p.aliases[t.text] = module
		}
	}
}

func (p *refPass) jsNamedImports(open int, module string) {
	close := p.closing(open)
	for j := open + 1; j < close; j++ {
		if p.tok(j).kind != tokName {
			continue
		}
		name, local := p.tok(j).text, p.tok(j).text
		if p.tok(j+1).is(tokName, "as") && p.tok(j+2).kind == tokName {
			local = p.tok(j + 2).text
			j += 2
		}
		p.aliases[local] = module + "." + name
	}
}

func normalizeModule(m string) string {
	return strings.TrimPrefix(m, "node:")
}

// chainAt records the names used by the expression chain that starts at i.
// A chain in an import statement or before "=" binds a name rather than
// reading it, so its references are marked bound.
func (p *refPass) chainAt(i int) {
	first := len(p.facts.refs)
	_, end, _ := p.refAt(i, true)
	if i < p.importEnd || p.tok(end).is(tokOp, "=") {
		for k := first; k < len(p.facts.refs); k++ {
			p.facts.refs[k].bound = true
		}
	}
}

// refAt reads a reference chain: a primary followed by attribute accesses,
// subscripts with constant keys and calls. With record set, it records each
// call and the final reference as facts. It returns the resolved name (call
// results marked with "()") and the index after the chain.
func (p *refPass) refAt(i int, record bool) (string, int, bool) {
	name, j, ok := p.primary(i, record)
	if !ok {
		return "", i, false
	}
	for {
		t := p.tok(j)
		switch {
		case len(name) > maxNameLength:
			// No rule names anything this long; stopping keeps hostile
			// chains from costing quadratic string building.
			return name, j, true
		case (t.is(tokOp, ".") || t.is(tokOp, "?.")) && p.tok(j+1).kind == tokName:
			name += "." + p.tok(j+1).text
			j += 2
		case t.is(tokOp, "["):
			close := p.closing(j)
			key, ok := p.constantIn(j+1, close)
			if !ok {
				p.recordFinal(record, name, t.line, i)
				return name, j, true
			}
			name += "." + key
			j = close + 1
		case t.is(tokOp, "("):
			if resolved, next, ok := p.specialCall(name, j, i, record); ok {
				name, j = resolved, next
				continue
			}
			if record {
				p.recordRef(name, t.line, j, i)
			}
			name += "()"
			j = p.closing(j) + 1
		default:
			p.recordFinal(record, name, t.line, i)
			return name, j, true
		}
	}
}

func (p *refPass) recordFinal(record bool, name string, line, at int) {
	if record && !strings.HasSuffix(name, "()") {
		p.recordRef(name, line, -1, at)
	}
}

// primary reads the start of a chain: a dotted name, or one of the calls
// that [refPass.specialCall] resolves.
func (p *refPass) primary(i int, record bool) (string, int, bool) {
	if p.tok(i).kind != tokName {
		return "", i, false
	}
	dotted, j := p.dottedAt(i)
	name := p.resolveHead(dotted)
	if p.tok(j).is(tokOp, "(") {
		if resolved, next, ok := p.specialCall(name, j, i, record); ok {
			return resolved, next, true
		}
	}

	return name, j, true
}

// specialCall resolves the calls that turn a constant string into a
// reference: getattr(obj, "name"), __import__("m"),
// importlib.import_module("m"), require("m") and import("m"), and in
// Python the namespace reads vars(obj), ns.get("name") and
// operator.attrgetter("name")(obj). callee is the resolved name of the
// function and open the index of its '('. It returns the resolved name and
// the index after the calls it read.
func (p *refPass) specialCall(callee string, open, at int, record bool) (string, int, bool) {
	// A call that did not resolve is not tried again: both primary and
	// refAt reach the same '(' and would otherwise double the work at every
	// level of nesting.
	if p.unresolved[open] {
		return "", 0, false
	}
	if p.lang == "python" {
		if name, end, ok := p.resolveNamespaceRead(callee, open, at, record); ok {
			return name, end, true
		}
	}
	name, ok := p.resolveSpecial(stripGlobalPrefix(withoutDict(callee)), open, at, record)
	if !ok {
		p.unresolved[open] = true
		return "", 0, false
	}

	return name, p.closing(open) + 1, true
}

// resolveNamespaceRead resolves the Python calls that read an attribute
// the way m.f or m.__dict__["f"] does, so that the rules see m.f:
// vars(m) is m.__dict__, ns.get("f") on a namespace is ns["f"], and
// operator.attrgetter("f")(m) is m.f. An attrgetter that is not applied
// to one object here resolves to operator.attrgetter.f, whose last element
// still names the attribute for the "*.f" patterns.
func (p *refPass) resolveNamespaceRead(callee string, open, at int, record bool) (string, int, bool) {
	args := p.splitArgs(open)
	end := p.closing(open) + 1
	line := p.tok(open).line
	resolved := ""
	switch function := stripGlobalPrefix(withoutDict(callee)); {
	case function == "vars" && len(args) == 1:
		base, ok := p.wholeRef(args[0])
		if !ok {
			return "", 0, false
		}
		resolved = base + ".__dict__"
	case strings.HasSuffix(callee, ".get") && isNamespace(strings.TrimSuffix(callee, ".get")) &&
		(len(args) == 1 || len(args) == 2):
		key, ok := p.constantIn(args[0][0], args[0][1])
		if !ok {
			return "", 0, false
		}
		resolved = strings.TrimSuffix(callee, "get") + key
	case function == "operator.attrgetter" && len(args) == 1:
		attr, ok := p.constantIn(args[0][0], args[0][1])
		if !ok || attr == "" {
			return "", 0, false
		}
		resolved = function + "." + attr
		if next := end; p.tok(next).is(tokOp, "(") {
			if objects := p.splitArgs(next); len(objects) == 1 {
				if base, ok := p.wholeRef(objects[0]); ok {
					resolved, end = base+"."+attr, p.closing(next)+1
				}
			}
		}
	default:
		return "", 0, false
	}
	if len(resolved) > maxNameLength {
		return "", 0, false
	}
	if record {
		p.recordRef(callee, line, open, at)
	}

	return resolved, end, true
}

// wholeRef resolves the reference chain that fills the token range r.
func (p *refPass) wholeRef(r [2]int) (string, bool) {
	name, end, ok := p.refAt(r[0], false)
	return name, ok && end == r[1]
}

// isNamespace reports whether name is a mapping whose get("f") returns the
// attribute or global f.
func isNamespace(name string) bool {
	switch name {
	case "__builtins__", "globals()", "locals()", "vars()", "sys.modules":
		return true
	}

	return strings.HasSuffix(name, ".__dict__") || strings.HasSuffix(name, ".__builtins__")
}

func (p *refPass) resolveSpecial(callee string, open, at int, record bool) (string, bool) {
	args := p.splitArgs(open)
	line := p.tok(open).line

	switch {
	case callee == "getattr" && p.lang == "python" && len(args) >= 2:
		base, baseEnd, ok := p.refAt(args[0][0], false)
		attr, constant := p.constantIn(args[1][0], args[1][1])
		if !ok || baseEnd != args[0][1] || !constant || len(base)+len(attr) > maxNameLength {
			return "", false
		}
		if record {
			p.recordRef(callee, line, open, at)
		}
		return base + "." + attr, true
	case isImportCall(p.lang, callee) && len(args) >= 1:
		// The module name is the first positional argument or, in
		// Python, the keyword argument name.
		facts := make([]argFact, 0, len(args))
		for _, r := range args {
			facts = append(facts, p.argumentIn(r[0], r[1]))
		}
		arg, ok := argument(facts, 1, "name")
		if !ok || !arg.constant {
			return "", false
		}
		module := normalizeModule(arg.value)
		if record {
			p.recordRef(callee, line, open, at)
			p.addImport(module, line)
		}
		return module, true
	}

	return "", false
}

func isImportCall(lang, callee string) bool {
	if lang == "python" {
		return callee == "__import__" || callee == "importlib.import_module" ||
			callee == "importlib.__import__"
	}

	return callee == "require" || callee == "import" || callee == "module.require"
}

// stripGlobalPrefix removes the namespaces through which builtins and
// globals are also reachable, so "__builtins__.eval" matches "eval".
func stripGlobalPrefix(name string) string {
	for _, prefix := range []string{"builtins.__dict__.", "__builtins__.__dict__.", "builtins.",
		"__builtins__.", "globalThis.", "global.", "window.", "self."} {
		if rest, ok := strings.CutPrefix(name, prefix); ok && rest != "" {
			return rest
		}
	}

	return name
}

// withoutDict removes ".__dict__" from a dotted name, because
// m.__dict__["f"] is the attribute m.f of a module or an instance.
func withoutDict(name string) string {
	return strings.ReplaceAll(name, ".__dict__.", ".")
}

// recordRef adds a reference fact; open is the index of the call's '(' or
// -1 for a plain reference.
func (p *refPass) recordRef(name string, line, open, at int) {
	variants := []string{name}
	direct := withoutDict(name)
	if direct != name {
		variants = append(variants, direct)
	}
	if stripped := stripGlobalPrefix(direct); stripped != direct {
		variants = append(variants, stripped)
	}
	if !strings.Contains(name, ".") {
		for _, m := range p.star {
			variants = append(variants, m+"."+name)
		}
	}
	for _, v := range variants {
		p.facts.refs = append(p.facts.refs, refFact{name: v, line: line, call: open >= 0})
		p.refIndex = append(p.refIndex, at)
		if open >= 0 {
			p.calls = append(p.calls, pendingCall{fact: len(p.facts.refs) - 1, open: open})
		}
	}
}

// finishCalls marks decoder calls, spreads taint through assignments, and
// fills in the argument facts of every call.
func (p *refPass) finishCalls() {
	decoderAt := map[int]bool{}
	for k, r := range p.facts.refs {
		if r.call && anyGlob(p.decoders, r.name) {
			decoderAt[p.refIndex[k]] = true
		}
	}
	for range 2 { // twice, so that y = x.decode() after x = b64decode(...) is tainted
		for _, as := range p.assignments {
			if p.rangeDecoded(as.start, as.end, decoderAt) {
				p.tainted[as.name] = true
			}
		}
	}

	// decodedBefore[k] counts decoded-data tokens before index k, so each
	// argument's check is one subtraction, even for deeply nested calls.
	decodedBefore := make([]int, len(p.toks)+1)
	for k := range p.toks {
		decodedBefore[k+1] = decodedBefore[k]
		if p.rangeDecoded(k, k+1, decoderAt) {
			decodedBefore[k+1]++
		}
	}
	for _, c := range p.calls {
		var args []argFact
		for _, r := range p.splitArgs(c.open) {
			arg := p.argumentIn(r[0], r[1])
			arg.decoded = decodedBefore[r[1]] > decodedBefore[r[0]]
			args = append(args, arg)
		}
		p.facts.refs[c.fact].args = args
	}

	p.facts.assigned = map[string][][2]int{}
	for _, as := range p.assignments {
		p.facts.assigned[as.name] = append(p.facts.assigned[as.name], [2]int{as.start, as.end})
	}
}

// argumentIn describes the call argument in the tokens [start, end). In
// Python, "name=value" is a keyword argument and "*seq" or "**map" an
// unpacked one, and the value is what follows the name or the stars.
// JavaScript has no keyword arguments, so "f(a = 1)" stays one positional
// expression there.
func (p *refPass) argumentIn(start, end int) argFact {
	var arg argFact
	if p.lang == "python" {
		switch first := p.tok(start); {
		case first.kind == tokName && p.tok(start+1).is(tokOp, "="):
			arg.keyword = first.text
			start += 2
		case first.is(tokOp, "*") || first.is(tokOp, "**"):
			arg.unpacked = first.text
			start++
		}
	}
	arg.start, arg.end = start, end
	if end == start+1 && p.tok(start).kind == tokName {
		arg.name = p.tok(start).text
	}
	if arg.unpacked == "" {
		arg.value, arg.constant = p.constantIn(start, end)
		arg.literal = arg.constant || p.literalIn(start, end)
	}

	return arg
}

func (p *refPass) rangeDecoded(start, end int, decoderAt map[int]bool) bool {
	for k := start; k < end; k++ {
		if decoderAt[k] {
			return true
		}
		t := p.tok(k)
		if t.kind == tokName && p.tainted[t.text] && !p.tok(k-1).is(tokOp, ".") {
			return true
		}
	}

	return false
}
