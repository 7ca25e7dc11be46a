package envelope

import (
	"cmp"
	"fmt"
)

// RecipientType is the kind of a header recipient: one identity or a role.
type RecipientType uint8

// Recipient types, as encoded in the header.
const (
	RecipientIdentity RecipientType = 1 // Name is an identity id, Version its HPKE key version
	RecipientRole     RecipientType = 2 // Name is a role, Version its epoch
)

// Recipient is one reader of a message: an identity at an HPKE key version,
// or a role at an epoch.
type Recipient struct {
	Type    RecipientType
	Name    string
	Version uint32
}

// String returns the recipient as "id:NAME@VERSION" or "role:NAME@EPOCH".
func (r Recipient) String() string {
	if r.Type == RecipientRole {
		return fmt.Sprintf("role:%s@%d", r.Name, r.Version)
	}

	return fmt.Sprintf("id:%s@%d", r.Name, r.Version)
}

// compareRecipients orders recipients by type, name, then version: the
// header lists them in this order, without duplicates.
func compareRecipients(a, b Recipient) int {
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}

	return cmp.Compare(a.Version, b.Version)
}
