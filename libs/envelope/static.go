package envelope

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// StaticDirectory is an in-memory [Directory] for tests, test vectors and
// single-process tools. Its view never goes stale unless
// [StaticDirectory.SetStale] sets an error. It is safe for concurrent use.
type StaticDirectory struct {
	mu      sync.RWMutex
	parties map[string]Party
	signing map[string]map[uint32]SigningKey
	hpkeKey map[string]RecipientKey
	roles   map[string]RoleEpoch
	stale   error
}

var _ Directory = (*StaticDirectory)(nil)

// NewStaticDirectory returns an empty directory.
func NewStaticDirectory() *StaticDirectory {
	return &StaticDirectory{
		parties: make(map[string]Party),
		signing: make(map[string]map[uint32]SigningKey),
		hpkeKey: make(map[string]RecipientKey),
		roles:   make(map[string]RoleEpoch),
	}
}

// SetParty adds or replaces an identity record.
func (d *StaticDirectory) SetParty(p Party) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p.Roles = slices.Clone(p.Roles)
	d.parties[p.ID] = p
}

// SetSigningKey adds or replaces one version of id's signing key.
func (d *StaticDirectory) SetSigningKey(id string, k SigningKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.signing[id] == nil {
		d.signing[id] = make(map[uint32]SigningKey)
	}
	k.RevokedAtSeq = maps.Clone(k.RevokedAtSeq)
	d.signing[id][k.Version] = k
}

// SetRecipientKey sets id's current HPKE public key.
func (d *StaticDirectory) SetRecipientKey(k RecipientKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hpkeKey[k.ID] = k
}

// SetRoleEpoch sets the current epoch of a role.
func (d *StaticDirectory) SetRoleEpoch(e RoleEpoch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e.Members = slices.Clone(e.Members)
	d.roles[e.Role] = e
}

// SetStale makes Fresh return err (wrapped in ErrStale); nil makes the view fresh.
func (d *StaticDirectory) SetStale(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stale = err
}

// Party implements [Directory].
func (d *StaticDirectory) Party(_ context.Context, id string) (Party, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	p, ok := d.parties[id]
	if !ok {
		return Party{}, fmt.Errorf("identity %q: %w", id, ErrNotFound)
	}

	return p, nil
}

// SigningKey implements [Directory].
func (d *StaticDirectory) SigningKey(_ context.Context, id string, v uint32) (SigningKey, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k, ok := d.signing[id][v]
	if !ok {
		return SigningKey{}, fmt.Errorf("signing key %q version %d: %w", id, v, ErrNotFound)
	}

	return k, nil
}

// RecipientKey implements [Directory].
func (d *StaticDirectory) RecipientKey(_ context.Context, id string) (RecipientKey, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k, ok := d.hpkeKey[id]
	if !ok {
		return RecipientKey{}, fmt.Errorf("HPKE key of %q: %w", id, ErrNotFound)
	}

	return k, nil
}

// RoleEpoch implements [Directory].
func (d *StaticDirectory) RoleEpoch(_ context.Context, role string) (RoleEpoch, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	e, ok := d.roles[role]
	if !ok {
		return RoleEpoch{}, fmt.Errorf("role %q: %w", role, ErrNotFound)
	}

	return e, nil
}

// Fresh implements [Directory].
func (d *StaticDirectory) Fresh(context.Context) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.stale != nil {
		return fmt.Errorf("%w: %w", ErrStale, d.stale)
	}

	return nil
}

// StaticKeys is an in-memory [Keys]. It is safe for concurrent use.
type StaticKeys struct {
	id string

	mu             sync.RWMutex
	signingVersion uint32
	signing        ed25519.PrivateKey
	hpkeKeys       map[uint32]hpke.PrivateKey
	roleKeys       map[roleEpoch]hpke.PrivateKey
}

type roleEpoch struct {
	role  string
	epoch uint32
}

var _ Keys = (*StaticKeys)(nil)

// NewStaticKeys returns keys for id with the given current signing key.
func NewStaticKeys(id string, version uint32, signing ed25519.PrivateKey) *StaticKeys {
	return &StaticKeys{
		id: id, signingVersion: version, signing: signing,
		hpkeKeys: make(map[uint32]hpke.PrivateKey),
		roleKeys: make(map[roleEpoch]hpke.PrivateKey),
	}
}

// SetSigningKey replaces the current signing key, as a rotation does.
func (k *StaticKeys) SetSigningKey(version uint32, key ed25519.PrivateKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.signingVersion, k.signing = version, key
}

// AddHPKEKey adds the HPKE private key of version.
func (k *StaticKeys) AddHPKEKey(version uint32, key hpke.PrivateKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hpkeKeys[version] = key
}

// AddRoleKey adds the private key of role at epoch.
func (k *StaticKeys) AddRoleKey(role string, epoch uint32, key hpke.PrivateKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.roleKeys[roleEpoch{role, epoch}] = key
}

// ID implements [Keys].
func (k *StaticKeys) ID() string { return k.id }

// SigningKey implements [Keys].
func (k *StaticKeys) SigningKey() (uint32, ed25519.PrivateKey) {
	k.mu.RLock()
	defer k.mu.RUnlock()

	return k.signingVersion, k.signing
}

// HPKEKey implements [Keys].
func (k *StaticKeys) HPKEKey(version uint32) (hpke.PrivateKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.hpkeKeys[version]
	if !ok {
		return nil, fmt.Errorf("HPKE key version %d: %w", version, ErrNotFound)
	}

	return key, nil
}

// RoleKey implements [Keys].
func (k *StaticKeys) RoleKey(role string, epoch uint32) (hpke.PrivateKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.roleKeys[roleEpoch{role, epoch}]
	if !ok {
		return nil, fmt.Errorf("role %q epoch %d: %w", role, epoch, ErrNotFound)
	}

	return key, nil
}

// MemoryWraps is an in-memory, create-only [WrapStore] for tests and vectors.
type MemoryWraps struct {
	mu    sync.Mutex
	wraps map[WrapKey][]byte
}

var _ WrapStore = (*MemoryWraps)(nil)

// NewMemoryWraps returns an empty store.
func NewMemoryWraps() *MemoryWraps { return &MemoryWraps{wraps: make(map[WrapKey][]byte)} }

// Create implements [WrapStore].
func (m *MemoryWraps) Create(_ context.Context, key WrapKey, wrap []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.wraps[key]; ok {
		return fmt.Errorf("wrap %s: %w", key, ErrWrapExists)
	}
	m.wraps[key] = slices.Clone(wrap)

	return nil
}

// Get implements [WrapStore].
func (m *MemoryWraps) Get(_ context.Context, key WrapKey) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.wraps[key]
	if !ok {
		return nil, fmt.Errorf("wrap %s: %w", key, ErrNotFound)
	}

	return slices.Clone(w), nil
}

// Replace overwrites a record. Only attack tests use it: a real store is
// create-only, but a hostile store operator can still swap records.
func (m *MemoryWraps) Replace(key WrapKey, wrap []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wraps[key] = slices.Clone(wrap)
}
