package identity

import (
	"crypto/hpke"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// RoleEpoch is one epoch of a role key: the HPKE key pair that messages
// with several readers (events, threats, incidents) are encrypted to.
// Removing a member starts a new epoch; a removed member keeps what it could
// already read, since revocation is not retroactive.
type RoleEpoch struct {
	Role  string `json:"role"`
	Epoch int    `json:"epoch"`
	// PublicKey is the serialized MLKEM768-X25519 public key of this epoch.
	PublicKey []byte    `json:"public_key"`
	Created   time.Time `json:"created"`
	// Members each carry the epoch private key sealed to their HPKE key.
	Members []RoleMember `json:"members"`
	// PrevPrivate is the previous epoch's private key sealed to this
	// epoch's public key, so a new member reads history with one wrap.
	// Empty for epoch 1.
	PrevPrivate []byte `json:"prev_private,omitempty"`
}

// RoleMember is one member's wrap of a role epoch private key.
type RoleMember struct {
	ID          string `json:"id"`
	HPKEVersion int    `json:"hpke_version"`
	Wrap        []byte `json:"wrap"`
}

// HasMember reports whether id is a member of the epoch.
func (e *RoleEpoch) HasMember(id string) bool {
	return slices.ContainsFunc(e.Members, func(m RoleMember) bool { return m.ID == id })
}

// roleWrapInfo binds a member wrap to the role, epoch, member and the
// member's key version, so a wrap cannot be moved to another slot.
func roleWrapInfo(role string, epoch int, member string, version int) []byte {
	return []byte("nodex/v1/role-wrap\x00" + role + "\x00" + strconv.Itoa(epoch) + "\x00" +
		member + "\x00" + strconv.Itoa(version))
}

// rolePrevInfo binds the chained previous key to its role and epochs.
func rolePrevInfo(role string, epoch int) []byte {
	return []byte("nodex/v1/role-prev\x00" + role + "\x00" + strconv.Itoa(epoch))
}

func sealTo(pub []byte, info, plaintext []byte) ([]byte, error) {
	pk, err := KEM().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("decoding HPKE public key: %w", err)
	}

	return hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), info, plaintext)
}

// NewRoleEpoch starts the epoch after prev (nil for the first) for members,
// chaining prevPriv (the private key of prev) into it. It returns the epoch
// record and its private key.
func NewRoleEpoch(role string, prev *RoleEpoch, prevPriv hpke.PrivateKey,
	members []*Identity, now time.Time,
) (*RoleEpoch, hpke.PrivateKey, error) {
	if err := ValidateRole(role); err != nil {
		return nil, nil, err
	}
	priv, err := KEM().GenerateKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating key of role %q: %w", role, err)
	}
	privBytes, err := priv.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("serializing key of role %q: %w", role, err)
	}
	e := &RoleEpoch{
		Role: role, Epoch: 1, PublicKey: priv.PublicKey().Bytes(), Created: now.UTC(),
	}
	if prev != nil {
		if prevPriv == nil {
			return nil, nil, fmt.Errorf("chaining role %q epoch %d: missing its private key",
				role, prev.Epoch)
		}
		e.Epoch = prev.Epoch + 1
		pb, err := prevPriv.Bytes()
		if err != nil {
			return nil, nil, fmt.Errorf("serializing previous key of role %q: %w", role, err)
		}
		if e.PrevPrivate, err = sealTo(e.PublicKey, rolePrevInfo(role, e.Epoch), pb); err != nil {
			return nil, nil, fmt.Errorf("sealing previous key of role %q: %w", role, err)
		}
	}
	for _, m := range members {
		hk, err := m.CurrentHPKEKey()
		if err != nil {
			return nil, nil, err
		}
		wrap, err := sealTo(hk.Key, roleWrapInfo(role, e.Epoch, m.ID, hk.Version), privBytes)
		if err != nil {
			return nil, nil, fmt.Errorf("wrapping role %q for %q: %w", role, m.ID, err)
		}
		e.Members = append(e.Members, RoleMember{ID: m.ID, HPKEVersion: hk.Version, Wrap: wrap})
	}

	return e, priv, nil
}

// OpenPrivate returns the epoch private key using the member wrap for c.
func (e *RoleEpoch) OpenPrivate(c *Credentials) (hpke.PrivateKey, error) {
	i := slices.IndexFunc(e.Members, func(m RoleMember) bool { return m.ID == c.ID })
	if i < 0 {
		return nil, fmt.Errorf("opening role %q epoch %d: %q is not a member",
			e.Role, e.Epoch, c.ID)
	}
	m := e.Members[i]
	hk, err := c.HPKEKeyVersion(m.HPKEVersion)
	if err != nil {
		return nil, err
	}
	info := roleWrapInfo(e.Role, e.Epoch, m.ID, m.HPKEVersion)
	b, err := hpke.Open(hk.Key, hpke.HKDFSHA256(), hpke.AES256GCM(), info, m.Wrap)
	if err != nil {
		return nil, fmt.Errorf("opening role %q epoch %d wrap: %w", e.Role, e.Epoch, err)
	}

	return KEM().NewPrivateKey(b)
}

// OpenPrevious returns the previous epoch's private key, given this epoch's
// private key.
func (e *RoleEpoch) OpenPrevious(priv hpke.PrivateKey) (hpke.PrivateKey, error) {
	if e.Epoch <= 1 || len(e.PrevPrivate) == 0 {
		return nil, fmt.Errorf("role %q epoch %d has no previous epoch", e.Role, e.Epoch)
	}
	info := rolePrevInfo(e.Role, e.Epoch)
	b, err := hpke.Open(priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info, e.PrevPrivate)
	if err != nil {
		return nil, fmt.Errorf("opening role %q epoch %d: %w", e.Role, e.Epoch-1, err)
	}

	return KEM().NewPrivateKey(b)
}
