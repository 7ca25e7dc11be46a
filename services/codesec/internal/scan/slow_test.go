package scan

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/bundle"
)

// TestScanCostLinear feeds inputs built to make a naive analysis quadratic
// or exponential: deep nesting, unclosed brackets, long chains. Each input
// is scanned at size n and 4n. Linear cost grows about 4 times, quadratic
// 16 times, so a growth over 10 times fails. Ratios rather than absolute
// times keep the test meaningful on a slow machine and under -race.
// Before the bracket table and the caches, some of these took minutes.
func TestScanCostLinear(t *testing.T) {
	t.Parallel()
	s := defaultScanner(t)
	inputs := map[string]func(n int) string{
		"nested calls": func(n int) string { return strings.Repeat("f(", n) + strings.Repeat(")", n) },
		"nested getattr": func(n int) string {
			return strings.Repeat("getattr(", n) + "x" + strings.Repeat(", 'a')", n)
		},
		"nested decode": func(n int) string {
			return "import base64\n" + strings.Repeat("base64.b64decode(", n) + "'aGk='" +
				strings.Repeat(")", n)
		},
		"nested parens":  func(n int) string { return strings.Repeat("(", n) + "'a'" + strings.Repeat(")", n) },
		"long concat":    func(n int) string { return strings.Repeat("'a' + ", n) + "'b'" },
		"long chain":     func(n int) string { return "x" + strings.Repeat(".a", n) },
		"many strings":   func(n int) string { return strings.Repeat("x = 'abc'\n", n) },
		"unclosed calls": func(n int) string { return strings.Repeat("f(", n) },
		"nested built exec": func(n int) string {
			return strings.Repeat("exec('import ' + ", n) + "x" + strings.Repeat(")", n)
		},
		"parenthesized concat": func(n int) string {
			return strings.Repeat("(", n) + strings.Repeat("'a' + ", n) + "'b'" + strings.Repeat(")", n)
		},
		"built code variables": func(n int) string {
			return strings.Repeat("c = 'x' + y\nexec(c)\n", n)
		},
		"long percent":   func(n int) string { return strings.Repeat("'%s' % ", n) + "'b'" },
		"nested percent": func(n int) string { return strings.Repeat("'%s' % (", n) + "x" + strings.Repeat(",)", n) },
		"percent chain":  func(n int) string { return "exec('%s' % x" + strings.Repeat(".a", n) + ")" },
		"partial joins": func(n int) string {
			return strings.Repeat("exec(''.join(['imp', x, ", n) + "y" + strings.Repeat("]))", n)
		},
		"variable chain": func(n int) string {
			var b strings.Builder
			for i := range n {
				fmt.Fprintf(&b, "v%d = v%d + 'x'\n", i+1, i)
			}
			return b.String() + fmt.Sprintf("exec(v%d)\n", n)
		},
		"spelled literals": func(n int) string {
			return "exec(" + strings.Repeat("'imp' + x + ", n) + "'y')\n"
		},
		"nested subst":    func(n int) string { return strings.Repeat("$(", n) },
		"nested template": func(n int) string { return strings.Repeat("`${", n) },
	}
	// scanTime returns the fastest of three scans, which filters out pauses
	// caused by other processes on a shared machine.
	scanTime := func(lang, src string) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range 3 {
			start := time.Now()
			if _, err := s.Scan(lang, []bundle.File{{Name: "f", Data: []byte(src)}}); err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}

	// The 1s floor ignores growth among fast scans, where pauses dominate.
	// Unclosed calls took 28s at size 20000 before the fix. The square law
	// puts that at about 2.5s for size 6000.
	const n = 1500
	for name, gen := range inputs {
		for _, lang := range []string{"python", "javascript", "sh"} {
			small := scanTime(lang, gen(n))
			large := scanTime(lang, gen(4*n))
			if large > time.Second && large > 10*small {
				t.Errorf("%s as %s: %s at size %d, %s at size %d, want linear growth",
					name, lang, small, n, large, 4*n)
			}
		}
	}
}
