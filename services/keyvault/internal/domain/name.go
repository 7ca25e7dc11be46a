package domain

import (
	"errors"
	"fmt"
)

// MaxNameLen is the maximum length of a key name in bytes.
const MaxNameLen = 63

// NameRule describes the key name rule in the words every rejection uses.
const NameRule = "a key name is 1-63 characters of a-z, 0-9, '.', '_' and '-', " +
	"starting with a letter or digit"

// ErrInvalidName is returned for a key name that breaks [NameRule].
var ErrInvalidName = errors.New("keyvault: invalid key name")

// ValidateName returns an error wrapping [ErrInvalidName] unless name
// follows [NameRule]. The error quotes the name, because a name is not secret.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w %q: %s", ErrInvalidName, truncate(name, MaxNameLen+1), NameRule)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if alnum || (i > 0 && (c == '.' || c == '_' || c == '-')) {
			continue
		}

		return fmt.Errorf("%w %q: %s", ErrInvalidName, truncate(name, MaxNameLen+1), NameRule)
	}

	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}

	return s[:n] + "..."
}
