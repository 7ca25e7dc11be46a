package scan

import (
	"slices"
	"strings"
)

type reportFunc func(r *Rule, line int, detail string)

// matchRule reports every place where one of r's matchers matches f.
func matchRule(r *Rule, f *facts, report reportFunc) {
	matchRefs(r, f, report)
	for _, imp := range f.imports {
		if slices.ContainsFunc(r.Imports, func(p string) bool {
			return moduleMatch(p, imp.value) || globMatch(p, imp.value)
		}) {
			report(r, imp.line, imp.value)
		}
	}
	for _, n := range f.names {
		if r.names[n.value] {
			report(r, n.line, n.value)
		}
	}
	matchStrings(r, f, report)
	for _, c := range f.commands {
		if slices.Contains(r.Commands, c.value) {
			report(r, c.line, c.value)
		}
	}
	for _, l := range f.lines {
		for _, re := range r.lines {
			if m := re.FindString(l.value); m != "" {
				report(r, l.line, m)
			}
		}
	}
	for _, c := range f.checks {
		if slices.Contains(r.Checks, c.value) {
			report(r, c.line, c.value)
		}
	}
	if r.BuiltCode != nil {
		matchBuiltCode(r, f, report)
	}
}

func matchRefs(r *Rule, f *facts, report reportFunc) {
	for _, ref := range f.refs {
		if r.calls.match(ref.name) {
			report(r, ref.line, ref.name)
		}
		if !ref.call && !ref.bound && r.values.match(ref.name) {
			report(r, ref.line, ref.name+" used as a value")
		}
		if !ref.call {
			continue
		}
		for _, c := range r.ComputedArgs {
			if !globMatch(c.Call, ref.name) {
				continue
			}
			if arg, ok := argument(ref.args, c.Arg, c.Keyword); ok && !arg.literal {
				report(r, ref.line, ref.name+" with a computed "+argumentName(c))
			}
		}
		if anyGlob(r.EncodedSinks, ref.name) && slices.ContainsFunc(ref.args,
			func(a argFact) bool { return a.decoded }) {
			report(r, ref.line, ref.name+" of decoded data")
		}
	}
}

// argument returns the argument that a call passes at the 1-based position
// pos or, when keyword is set, by that keyword. ok is false when the call
// passes neither. An unpacked *args that starts at or before pos, or a
// **kwargs when no explicit keyword argument matches, is returned in its
// place, because it may supply the value.
func argument(args []argFact, pos int, keyword string) (argFact, bool) {
	positional := 0
	var kwargs *argFact
	for i, a := range args {
		switch {
		case a.keyword != "":
			if keyword != "" && a.keyword == keyword {
				return a, true
			}
		case a.unpacked == "**":
			kwargs = &args[i]
		case a.unpacked == "*":
			if positional < pos {
				return a, true
			}
		default:
			positional++
			if positional == pos {
				return a, true
			}
		}
	}
	if kwargs != nil && keyword != "" {
		return *kwargs, true
	}

	return argFact{}, false
}

// argumentName names a computed argument in a finding: its keyword where
// the rule gives one ("fromlist"), else "argument".
func argumentName(c ComputedArg) string {
	if c.Keyword != "" {
		return c.Keyword
	}

	return "argument"
}

func matchStrings(r *Rule, f *facts, report reportFunc) {
	for _, s := range f.strings {
		if r.names[s.value] {
			report(r, s.line, s.value)
		}
		if s.folded && hasObfuscatedName(r.ObfuscatedNames, s.value, s.literals) {
			report(r, s.line, s.value)
		}
		for _, re := range r.strings {
			if re.MatchString(s.value) {
				report(r, s.line, s.value)
			}
		}
	}
}

// hasObfuscatedName reports whether value contains one of names as a word
// that none of the literals it was built from contains. Words are split at
// characters that cannot be part of a name. So "os.sys" + "tem" hides
// "system", while "open " + "file" only repeats a word written in the source.
func hasObfuscatedName(names []string, value string, literals []string) bool {
	if len(names) == 0 {
		return false
	}
	written := map[string]bool{}
	for _, lit := range literals {
		for _, w := range nameWords(lit) {
			written[w] = true
		}
	}
	for _, w := range nameWords(value) {
		if slices.Contains(names, w) && !written[w] {
			return true
		}
	}

	return false
}

func nameWords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r != '_' && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	})
}
