package envelope

import (
	"strings"
	"testing"
)

func TestWrapKeyLayouts(t *testing.T) {
	k := WrapKey{Sender: "agent-demo", Recipient: Recipient{Type: RecipientRole,
		Name: "service:codesec", Version: 7}}
	k.KID[0] = 0xab
	for _, s := range []string{k.String(), k.LegacyString()} {
		got, err := ParseWrapKey(s)
		if err != nil {
			t.Fatalf("parsing %q: %v", s, err)
		}
		if got != k {
			t.Errorf("parsing %q: got %+v, want %+v", s, got, k)
		}
	}
	tokens := strings.Split(k.String(), ".")
	if len(tokens) != 5 {
		t.Fatalf("key %q has %d tokens, want 5", k.String(), len(tokens))
	}
	if want := WrapRecipientToken(RecipientRole, "service:codesec"); tokens[3] != want {
		t.Errorf("recipient token %q, want %q", tokens[3], want)
	}
	if tokens[4] != "7" {
		t.Errorf("version token %q, want 7", tokens[4])
	}
	for _, bad := range []string{"wrap.a.b.c", "wrap.YQ." + strings.Repeat("ab", 32) + ".i=YQ=1.2",
		"wrap.YQ." + strings.Repeat("ab", 32) + ".x=YQ.1"} {
		if _, err := ParseWrapKey(bad); err == nil {
			t.Errorf("parsed malformed key %q", bad)
		}
	}
}
