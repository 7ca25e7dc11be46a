package domain

import (
	"crypto/rand"
	"math/big"
)

// Fake returns a random value of the format's shape, with variable segments
// at their minimum length. Tests use it for keys that look real to a
// validator but were never issued by anyone.
func (f Format) Fake() []byte {
	var out []byte
	for _, s := range f.Segments {
		if s.Literal != "" {
			out = append(out, s.Literal...)
			continue
		}
		for range s.MinLen {
			n, err := rand.Int(rand.Reader, big.NewInt(int64(len(s.Charset))))
			if err != nil {
				panic(err) // crypto/rand does not fail on Linux
			}
			out = append(out, s.Charset[n.Int64()])
		}
	}

	return out
}
