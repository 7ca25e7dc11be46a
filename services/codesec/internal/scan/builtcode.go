package scan

import (
	"slices"
	"sort"
	"strings"
)

// matchBuiltCode reports code sink calls whose code is built at run time
// from text that matches one of the rule's patterns or spells one of its
// words.
func matchBuiltCode(r *Rule, f *facts, report reportFunc) {
	s := newBuiltCodeSearch(r.BuiltCode, f)
	for _, ref := range f.refs {
		if !ref.call || !anyGlob(r.BuiltCode.Sinks, ref.name) {
			continue
		}
		arg, ok := argument(ref.args, 1, "source")
		if !ok {
			// InteractiveConsole.push names its code parameter line.
			arg, ok = argument(ref.args, 1, "line")
		}
		if !ok || arg.constant {
			continue
		}
		if m, found := s.searchArgument(arg.start, arg.end); found {
			report(r, ref.line, ref.name+"('"+m+"' ...)")
		}
	}
}

// builtCodeSearch finds, for a token range, the text of code built there
// that matches a rule. Every table is built once per file, so each argument is
// checked with a few binary searches, however deeply the calls nest.
type builtCodeSearch struct {
	f *facts
	// next[k] is the index of the first matching piece at or after piece
	// k, and text[k] the text of piece k from its match on.
	next []int
	text []string
	// literals are the indexes into f.pieces of the string literals.
	literals []int
	// spelledEnd[k] is the lowest index into literals of the last literal
	// of a word spelled from literal k or a later one on, or
	// len(literals) when no word is.
	spelledEnd  []int
	spelledWord []string
	// byName is the text found for each variable, "" for none.
	byName    map[string]string
	searching map[string]bool
	// nextVariable[k] is the index into f.variables of the first variable
	// at or after position k whose assigned values match.
	nextVariable []int
	// unread[k] leads to the first variable at or after k that no
	// assigned value has read yet, through path-compressed links.
	unread []int
}

func newBuiltCodeSearch(b *BuiltCode, f *facts) *builtCodeSearch {
	s := &builtCodeSearch{f: f, byName: map[string]string{}, searching: map[string]bool{}}
	n := len(f.pieces)
	s.next = make([]int, n+1)
	s.text = make([]string, n)
	s.next[n] = n
	for k := n - 1; k >= 0; k-- {
		s.next[k] = s.next[k+1]
		for _, re := range b.patterns {
			if loc := re.FindStringIndex(f.pieces[k].value); loc != nil {
				// The text from the match on, so that a finding shows the
				// import even when the literal is long.
				from := f.pieces[k].value[loc[0]:]
				s.next[k], s.text[k] = k, strings.TrimLeft(from, " \t\n;:")
				break
			}
		}
	}
	s.indexSpelled(b.Spelled)

	nv := len(f.variables)
	s.unread = make([]int, nv+1)
	for k := range s.unread {
		s.unread[k] = k
	}
	s.nextVariable = make([]int, nv+1)
	s.nextVariable[nv] = nv
	for k := nv - 1; k >= 0; k-- {
		s.nextVariable[k] = s.nextVariable[k+1]
		if _, ok := s.searchName(s.variableName(k)); ok {
			s.nextVariable[k] = k
		}
	}

	return s
}

// indexSpelled finds the words spelled across string literals. The
// literals are read as one text, and a word found there that crosses a
// literal's edge is recorded with its first and last literal.
func (s *builtCodeSearch) indexSpelled(words []string) {
	var all strings.Builder
	var starts []int // offset of each literal in the text
	for k, p := range s.f.pieces {
		if p.literal {
			s.literals = append(s.literals, k)
			starts = append(starts, all.Len())
			all.WriteString(p.value)
		}
	}
	text := all.String()
	n := len(s.literals)
	s.spelledEnd = make([]int, n+1)
	s.spelledWord = make([]string, n+1)
	for k := range s.spelledEnd {
		s.spelledEnd[k] = n
	}
	literalAt := func(offset int) int {
		return sort.SearchInts(starts, offset+1) - 1
	}
	for _, w := range words {
		for from := 0; from < len(text); {
			i := strings.Index(text[from:], w)
			if i < 0 {
				break
			}
			start, end := from+i, from+i+len(w)
			from = start + 1
			first, last := literalAt(start), literalAt(end-1)
			if first == last || !wordEdge(text, start-1) || !wordEdge(text, end) {
				continue
			}
			if last < s.spelledEnd[first] {
				s.spelledEnd[first], s.spelledWord[first] = last, w
			}
		}
	}
	for k := n - 1; k >= 0; k-- {
		if s.spelledEnd[k+1] < s.spelledEnd[k] {
			s.spelledEnd[k], s.spelledWord[k] = s.spelledEnd[k+1], s.spelledWord[k+1]
		}
	}
}

// wordEdge reports whether the byte at i of text is outside it or not a
// letter or digit, so that a word next to it is a whole word.
func wordEdge(text string, i int) bool {
	if i < 0 || i >= len(text) {
		return true
	}
	c := text[i]

	return !isLetter(c) && !isDigit(c)
}

// searchArgument returns the matching text of the code in the tokens
// [start, end), including the values assigned to the variables it reads.
func (s *builtCodeSearch) searchArgument(start, end int) (string, bool) {
	if m, ok := s.searchPieces(start, end); ok {
		return m, true
	}
	lo := s.variableIndex(start)
	if k := s.nextVariable[lo]; k < len(s.f.variables) && s.f.variables[k].at < end {
		return s.searchName(s.variableName(k))
	}

	return "", false
}

// searchPieces looks for a pattern in the pieces and a spelled word in
// the literals of the tokens [start, end).
func (s *builtCodeSearch) searchPieces(start, end int) (string, bool) {
	pieces := s.f.pieces
	lo, _ := slices.BinarySearchFunc(pieces, start, func(p pieceFact, at int) int { return p.at - at })
	if k := s.next[lo]; k < len(pieces) && pieces[k].at < end {
		return s.text[k], true
	}
	first := sort.Search(len(s.literals), func(k int) bool { return pieces[s.literals[k]].at >= start })
	if last := s.spelledEnd[first]; last < len(s.literals) && pieces[s.literals[last]].at < end {
		return s.spelledWord[first], true
	}

	return "", false
}

// searchName returns the matching text of the values assigned to name,
// following the variables they read. Each variable is searched once, and
// a variable read while its own values are searched counts as no match.
func (s *builtCodeSearch) searchName(name string) (string, bool) {
	if m, ok := s.byName[name]; ok {
		return m, m != ""
	}
	if s.searching[name] {
		return "", false
	}
	s.searching[name] = true
	m := ""
	for _, r := range s.f.assigned[name] {
		if found, ok := s.searchAssigned(r[0], r[1]); ok {
			m = found
			break
		}
	}
	s.byName[name] = m

	return m, m != ""
}

// searchAssigned is searchArgument for an assigned value. It reads the
// variables one by one, because the table of matching variables is being
// built from it. Each variable is read once in all: assigned values can
// nest in malformed input, and reading them again would cost quadratic
// time.
// NOTE: a variable that was read while the search of its own values was
// in progress, as in a = b + x; b = a, counts as no match.
func (s *builtCodeSearch) searchAssigned(start, end int) (string, bool) {
	if m, ok := s.searchPieces(start, end); ok {
		return m, true
	}
	for k := s.firstUnread(s.variableIndex(start)); k < len(s.f.variables) && s.f.variables[k].at < end; k = s.firstUnread(k) {
		s.unread[k] = k + 1
		if m, ok := s.searchName(s.variableName(k)); ok {
			return m, true
		}
	}

	return "", false
}

// firstUnread returns the first variable at or after k that no assigned
// value has read.
func (s *builtCodeSearch) firstUnread(k int) int {
	root := k
	for s.unread[root] != root {
		root = s.unread[root]
	}
	for s.unread[k] != root {
		s.unread[k], k = root, s.unread[k]
	}

	return root
}

// variableIndex returns the index of the first variable at or after the
// token index at.
func (s *builtCodeSearch) variableIndex(at int) int {
	k, _ := slices.BinarySearchFunc(s.f.variables, at, func(p pieceFact, at int) int { return p.at - at })
	return k
}

func (s *builtCodeSearch) variableName(k int) string {
	return s.f.variables[k].value
}
