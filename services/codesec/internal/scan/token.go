package scan

// tokenKind classifies a token. The tokenizers keep only what the analysis
// needs: names, string values, numbers, operators and line ends.
type tokenKind int

const (
	tokName tokenKind = iota + 1
	tokString
	tokNumber
	tokOp
	tokNewline
)

// token is one lexical token. For strings, text is the decoded value;
// raw is false for f-strings and template literals with substitutions,
// whose value is only partly known.
type token struct {
	kind  tokenKind
	text  string
	line  int
	exact bool
}

func (t token) is(kind tokenKind, text string) bool {
	return t.kind == kind && t.text == text
}
