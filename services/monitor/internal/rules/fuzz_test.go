package rules

import (
	"testing"

	"github.com/nodexsec/nodex/services/monitor/internal/domain"
)

// FuzzParse checks that any rule file either fails to parse or yields rules
// an engine accepts.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("version: 1\nrules: [{id: a, kind: single, threat: API_ABUSE, " +
		"severity: low, match: {type: x}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse(data)
		if err != nil {
			return
		}
		if _, err := domain.NewEngine(rs); err != nil {
			t.Fatalf("Parse accepted rules that NewEngine rejects: %v", err)
		}
	})
}
