package broker

import "testing"

func TestHostGroup(t *testing.T) {
	tests := map[string]string{
		"192.0.2.77":         "192.0.2.0/24",
		"192.0.2.1":          "192.0.2.0/24",
		"::ffff:192.0.2.9":   "192.0.2.0/24",
		"2001:db8:1:2:3::4":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ff::1": "2001:db8:1:2::/64",
		"not-an-address":     "not-an-address",
		"":                   "",
	}
	for host, want := range tests {
		if got := hostGroup(host); got != want {
			t.Errorf("hostGroup(%q) = %q, want %q", host, got, want)
		}
	}
}
