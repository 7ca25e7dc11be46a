package scan

import (
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// folded is the result of evaluating a constant string expression.
type folded struct {
	value    string
	end      int  // index after the expression
	pieces   bool // built from more than one literal, or transformed
	complete bool // the whole '+' chain was constant
	// partial means value has holeMark where a part computed at run time
	// goes, as in "import …" for "import %s" % name. A partial value is
	// never complete.
	partial bool
	// literals are the string literals as written in the source that the
	// value was built from.
	literals []string
}

// maxFoldDepth bounds recursion through nested brackets in hostile input.
const maxFoldDepth = 32

// holeMark stands for text computed at run time in a partial value.
const holeMark = "…"

// constantIn reports the value of the tokens [start, end) when they form
// one constant string expression.
func (a *analyzer) constantIn(start, end int) (string, bool) {
	return a.constantAt(start, end, 0)
}

// constantAt is constantIn inside a fold at the given depth, so nested
// calls such as b64decode(b64decode(...)) stay within maxFoldDepth.
func (a *analyzer) constantAt(start, end, depth int) (string, bool) {
	f, ok := a.fold(start, depth)
	if !ok || !f.complete || f.end != end {
		return "", false
	}

	return f.value, true
}

// literalIn reports whether the tokens [start, end) are a literal whose
// value the source fixes: a constant string, a number, None, True, False
// (null, undefined, true, false in JavaScript), or a list, tuple or set
// whose elements are literals.
func (a *analyzer) literalIn(start, end int) bool {
	return a.literalAt(start, end, 0)
}

func (a *analyzer) literalAt(start, end, depth int) bool {
	if start >= end || depth > maxFoldDepth {
		return false
	}
	if _, ok := a.constantAt(start, end, depth); ok {
		return true
	}
	t := a.tok(start)
	if end == start+1 {
		return t.kind == tokNumber || t.kind == tokName && slices.Contains(literalNames[a.lang], t.text)
	}
	if !t.is(tokOp, "[") && !t.is(tokOp, "(") && !t.is(tokOp, "{") || a.closing(start) != end-1 {
		return false
	}
	for _, r := range a.splitArgs(start) {
		if !a.literalAt(r[0], r[1], depth+1) {
			return false
		}
	}

	return true
}

// literalNames are the keywords that name a fixed value, by language.
var literalNames = map[string][]string{
	"python":     {"None", "True", "False"},
	"javascript": {"null", "undefined", "true", "false"},
}

// fold evaluates the expression at i as far as it is a constant string:
// literals (adjacent ones concatenated), '+', chr(N), String.fromCharCode,
// str.join over constant lists, reversal ([::-1] or
// .split("").reverse().join("")), case changes, .decode(), and decoder calls
// (base64, hex) on constants. These are the ways real payloads hide a name
// such as "system" from a plain text search.
func (a *analyzer) fold(i, depth int) (folded, bool) {
	// Results are cached by position: the same expression is reached from
	// every token before it and from enclosing calls, and hostile nesting
	// would otherwise make that quadratic or worse. A result cut short by
	// maxFoldDepth is cached too.
	// NOTE: so a constant nested more than maxFoldDepth brackets or calls
	// deep is not folded, and a name hidden that deep is not found.
	if i < 0 || i >= len(a.foldMemo) {
		return folded{}, false
	}
	if r := a.foldMemo[i]; r.done {
		return r.f, r.ok
	}
	f, ok := a.foldUncached(i, depth)
	f.literals = slices.Clip(f.literals) // so a caller's append copies
	a.foldMemo[i] = foldedResult{f: f, ok: ok, done: true}

	return f, ok
}

func (a *analyzer) foldUncached(i, depth int) (folded, bool) {
	f, ok := a.foldAtom(i, depth)
	if !ok {
		return folded{}, false
	}
	f.complete = !f.partial
	for f.complete && a.tok(f.end).is(tokOp, "+") {
		next, ok := a.foldAtom(f.end+1, depth)
		if !ok {
			f.complete = false
			break
		}
		f.value += next.value
		f.end = next.end
		f.pieces = true
		f.literals = append(f.literals, next.literals...)
		if next.partial {
			f.partial, f.complete = true, false
		}
	}

	return f, true
}

func (a *analyzer) foldAtom(i, depth int) (folded, bool) {
	if depth > maxFoldDepth {
		return folded{}, false
	}
	f, ok := a.foldPrimary(i, depth)
	if !ok {
		return folded{}, false
	}
	f = a.foldPostfix(f, depth)
	// "%" binds tighter than "+" and left to right, so each atom of a "+"
	// chain takes the "%" operators that follow it.
	for a.lang == "python" && !f.partial && a.tok(f.end).is(tokOp, "%") {
		next, ok := a.foldPercent(f, depth)
		if !ok {
			break
		}
		f = next
	}

	return f, true
}

func (a *analyzer) foldPrimary(i, depth int) (folded, bool) {
	t := a.tok(i)
	switch {
	case t.kind == tokString && t.exact:
		f := folded{value: t.text, end: i + 1, literals: []string{t.text}}
		for a.tok(f.end).kind == tokString && a.tok(f.end).exact && a.lang == "python" {
			f.value += a.tok(f.end).text
			f.literals = append(f.literals, a.tok(f.end).text)
			f.end++
			f.pieces = true
		}
		return f, true
	case t.is(tokOp, "("):
		inner, ok := a.fold(i+1, depth+1)
		if !ok || !inner.complete || !a.tok(inner.end).is(tokOp, ")") {
			return folded{}, false
		}
		inner.end++
		return inner, true
	case t.is(tokOp, "["):
		return a.foldJSJoin(i, depth)
	case t.kind == tokName:
		return a.foldCall(i, depth)
	}

	return folded{}, false
}

// foldCall evaluates chr(N), String.fromCharCode(N, ...), decoder calls on
// constants, and "sep".join([...]).
func (a *analyzer) foldCall(i, depth int) (folded, bool) {
	name, open := a.dottedAt(i)
	if !a.tok(open).is(tokOp, "(") {
		return folded{}, false
	}
	name = stripGlobalPrefix(a.resolveHead(name))
	args := a.splitArgs(open)
	end := a.closing(open) + 1

	switch {
	case name == "chr" || name == "String.fromCharCode":
		var b strings.Builder
		for _, r := range args {
			n, ok := a.intIn(r[0], r[1])
			if !ok || n < 0 || n > utf8.MaxRune {
				return folded{}, false
			}
			b.WriteRune(rune(n))
		}
		return folded{value: b.String(), end: end, pieces: true}, len(args) > 0
	case anyGlob(a.decoders, name) && len(args) >= 1:
		value, ok := a.constantAt(args[0][0], args[0][1], depth+1)
		if !ok {
			return folded{}, false
		}
		encoding := ""
		if len(args) >= 2 {
			encoding, _ = a.constantAt(args[1][0], args[1][1], depth+1)
		}
		decoded, ok := decodeConstant(name, encoding, value)
		return folded{value: decoded, end: end, pieces: true}, ok
	}

	return folded{}, false
}

func (a *analyzer) intIn(start, end int) (int, bool) {
	if end != start+1 || a.tok(start).kind != tokNumber {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.ReplaceAll(a.tok(start).text, "_", ""), 0, 32)

	return int(n), err == nil
}

// foldPostfix applies the method calls and slices that keep a value
// constant.
func (a *analyzer) foldPostfix(f folded, depth int) folded {
	for {
		j := f.end
		switch {
		case a.lang == "python" && a.isReverseSlice(j):
			f.value = reverse(f.value)
			f.end = j + 6
			f.pieces = true
		case a.tok(j).is(tokOp, ".") && a.tok(j+1).kind == tokName && a.tok(j+2).is(tokOp, "("):
			next, ok := a.applyMethod(f, j+1, depth)
			if !ok {
				return f
			}
			f = next
		default:
			return f
		}
	}
}

func (a *analyzer) isReverseSlice(j int) bool {
	want := []string{"[", ":", ":", "-", "1", "]"}
	for k, w := range want {
		if a.tok(j+k).text != w {
			return false
		}
	}

	return true
}

func (a *analyzer) applyMethod(f folded, nameAt, depth int) (folded, bool) {
	method := a.tok(nameAt).text
	open := nameAt + 1
	args := a.splitArgs(open)
	end := a.closing(open) + 1

	switch method {
	case "decode", "encode", "toString", "strip", "trim", "valueOf":
		f.end = end
		return f, true
	case "lower", "toLowerCase":
		f.value, f.end, f.pieces = strings.ToLower(f.value), end, true
		return f, true
	case "upper", "toUpperCase":
		f.value, f.end, f.pieces = strings.ToUpper(f.value), end, true
		return f, true
	case "join":
		if a.lang != "python" || len(args) != 1 {
			return folded{}, false
		}
		parts, ok := a.foldList(args[0][0], args[0][1], depth)
		if !ok {
			return a.foldPartialJoin(f.value, args[0], end, depth)
		}
		return folded{value: strings.Join(parts, f.value), end: end, pieces: true,
			literals: append(parts, f.value)}, true
	case "split":
		// "abc".split('').reverse().join('') reverses a string in JavaScript.
		k := end
		if a.tok(k).is(tokOp, ".") && a.tok(k+1).is(tokName, "reverse") &&
			a.tok(k+4).is(tokOp, ".") && a.tok(k+5).is(tokName, "join") {
			f.value, f.end, f.pieces = reverse(f.value), a.closing(k+6)+1, true
			return f, true
		}
	}

	return folded{}, false
}

// foldList evaluates a bracketed list or tuple of constant strings.
func (a *analyzer) foldList(start, end, depth int) ([]string, bool) {
	t := a.tok(start)
	if !t.is(tokOp, "[") && !t.is(tokOp, "(") || a.closing(start) != end-1 {
		return nil, false
	}
	var parts []string
	for _, r := range a.splitArgs(start) {
		v, ok := a.constantAt(r[0], r[1], depth+1)
		if !ok {
			return nil, false
		}
		parts = append(parts, v)
	}

	return parts, true
}

// foldPartialJoin evaluates sep.join([...]) over a list or tuple literal
// with elements computed at run time, which become holeMark.
func (a *analyzer) foldPartialJoin(sep string, list [2]int, end, depth int) (folded, bool) {
	t := a.tok(list[0])
	if !t.is(tokOp, "[") && !t.is(tokOp, "(") || a.closing(list[0]) != list[1]-1 {
		return folded{}, false
	}
	f := folded{end: end, pieces: true, partial: true, literals: []string{sep}}
	for k, r := range a.splitArgs(list[0]) {
		if k > 0 {
			f.value += sep
		}
		part := a.partialIn(r[0], r[1], depth)
		f.value += part.value
		f.literals = append(f.literals, part.literals...)
	}

	return f, true
}

// partialIn evaluates the expression in the tokens [start, end) as far as
// it is constant: a constant string as itself, and the constant start of
// a longer expression followed by holeMark. Anything else is holeMark.
func (a *analyzer) partialIn(start, end, depth int) folded {
	f, ok := a.fold(start, depth+1)
	switch {
	case ok && f.complete && f.end == end:
		return f
	case !ok || f.end > end || f.value == "":
		return folded{value: holeMark, partial: true}
	case !f.partial:
		f.value += holeMark
	}
	f.partial, f.complete = true, false

	return f
}

// foldJSJoin evaluates ['a', 'b'].join("") in JavaScript.
func (a *analyzer) foldJSJoin(i, depth int) (folded, bool) {
	close := a.closing(i)
	if a.lang != "javascript" || !a.tok(close+1).is(tokOp, ".") ||
		!a.tok(close+2).is(tokName, "join") || !a.tok(close+3).is(tokOp, "(") {
		return folded{}, false
	}
	parts, ok := a.foldList(i, close+1, depth)
	if !ok {
		return folded{}, false
	}
	sep := ","
	if args := a.splitArgs(close + 3); len(args) == 1 {
		if sep, ok = a.constantAt(args[0][0], args[0][1], depth+1); !ok {
			return folded{}, false
		}
	}

	return folded{value: strings.Join(parts, sep), end: a.closing(close+3) + 1, pieces: true,
		literals: append(parts, sep)}, true
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)

	return string(r)
}

// decodeConstant decodes value for a decoder call: hex for names with
// "hex" in them, base64 for base64 names, atob and Buffer.from(s, "base64"),
// rot13 for codecs.decode(s, "rot13").
func decodeConstant(name, encoding, value string) (string, bool) {
	lower := strings.ToLower(name + " " + encoding)
	switch {
	case strings.Contains(lower, "rot"):
		return rot13(value), true
	case strings.Contains(lower, "hex"):
		b, err := hex.DecodeString(value)
		return string(b), err == nil
	case strings.Contains(lower, "64") || strings.Contains(lower, "atob"):
		b, ok := decodeBase64(value)
		return string(b), ok
	}

	return "", false
}

func decodeBase64(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding,
		base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}

	return nil, false
}

func rot13(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return 'a' + (r-'a'+13)%26
		case r >= 'A' && r <= 'Z':
			return 'A' + (r-'A'+13)%26
		}
		return r
	}, s)
}

// collectPieces records the text of every string literal, and the value
// of every constant expression built from pieces, by token position.
func (a *analyzer) collectPieces() {
	for i, t := range a.toks {
		if t.kind == tokString {
			a.facts.pieces = append(a.facts.pieces, pieceFact{value: t.text, at: i, literal: true})
		}
		// A chain after "+" or "%" is part of the expression before it,
		// and a parenthesized one gives the same value as its inside,
		// which is recorded at the next token. Skipping them keeps long
		// chains and nested brackets from searching one long string once
		// per operator or bracket.
		if a.tok(i-1).is(tokOp, "+") || a.tok(i-1).is(tokOp, "%") || t.is(tokOp, "(") {
			continue
		}
		if f, ok := a.fold(i, 0); ok && f.pieces {
			a.facts.pieces = append(a.facts.pieces, pieceFact{value: f.value, at: i})
		}
	}
}

// collectStrings records every maximal constant string expression.
func (a *analyzer) collectStrings() {
	covered := -1
	for i := range a.toks {
		if i < covered {
			continue
		}
		prev := a.tok(i - 1)
		if prev.is(tokOp, "+") || prev.is(tokOp, "%") {
			continue
		}
		f, ok := a.fold(i, 0)
		if !ok {
			if t := a.tok(i); t.kind == tokString {
				a.facts.strings = append(a.facts.strings, stringFact{value: t.text, line: t.line})
			}
			continue
		}
		a.facts.strings = append(a.facts.strings, stringFact{value: f.value,
			line: a.tok(i).line, folded: f.pieces, literals: f.literals})
		if !f.pieces {
			covered = f.end
		}
	}
}
