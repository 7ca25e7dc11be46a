// Package envtest builds registries of real identities for tests of code
// that sends or receives envelopes: a [envelope.StaticDirectory] with
// Ed25519 and MLKEM768-X25519 keys derived from fixed seeds, role epochs,
// and one [envelope.Codec] per party.
package envtest

import (
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

	"github.com/nodexsec/nodex/libs/envelope"
)

// World is a registry and a wrap store shared by test parties.
type World struct {
	Dir   *envelope.StaticDirectory
	Wraps envelope.WrapStore

	mu    sync.Mutex
	roles map[string]*role
}

type role struct {
	epoch   uint32
	members map[string]*Party
	privs   map[uint32]hpke.PrivateKey
}

// Party is one identity with its private keys.
type Party struct {
	ID   string
	Keys *envelope.StaticKeys
	w    *World
}

// NewWorld returns an empty registry whose parties store wraps in wraps
// (nil means an in-memory store).
func NewWorld(wraps envelope.WrapStore) *World {
	if wraps == nil {
		wraps = envelope.NewMemoryWraps()
	}

	return &World{Dir: envelope.NewStaticDirectory(), Wraps: wraps,
		roles: make(map[string]*role)}
}

// Seed derives 32 bytes of test key material from label.
func Seed(label string) []byte {
	s := sha256.Sum256([]byte("nodex test seed " + label))

	return s[:]
}

// HPKEKey derives an MLKEM768-X25519 key pair from label.
func HPKEKey(t testing.TB, label string) hpke.PrivateKey {
	t.Helper()
	k, err := hpke.MLKEM768X25519().DeriveKeyPair(Seed(label))
	if err != nil {
		t.Fatalf("deriving HPKE key %s: %v", label, err)
	}

	return k
}

// AddParty registers an active identity of kind with roles, signing key
// version 1 and HPKE key version 1.
func (w *World) AddParty(t testing.TB, id, kind string, roles ...string) *Party {
	t.Helper()
	signing := ed25519.NewKeyFromSeed(Seed(id + "/sign/1"))
	keys := envelope.NewStaticKeys(id, 1, signing)
	hk := HPKEKey(t, id+"/hpke/1")
	keys.AddHPKEKey(1, hk)
	w.Dir.SetParty(envelope.Party{ID: id, Kind: kind, Status: envelope.StatusActive,
		Roles: roles})
	w.Dir.SetSigningKey(id, envelope.SigningKey{Version: 1,
		Public: signing.Public().(ed25519.PublicKey)})
	w.Dir.SetRecipientKey(envelope.RecipientKey{ID: id, Version: 1, Public: hk.PublicKey()})
	p := &Party{ID: id, Keys: keys, w: w}
	for _, r := range roles {
		w.Join(t, r, p)
	}

	return p
}

// Codec returns a new codec for p; mutate, if not nil, adjusts the config.
func (p *Party) Codec(t testing.TB, mutate func(*envelope.Config)) *envelope.Codec {
	t.Helper()
	cfg := envelope.Config{Keys: p.Keys, Directory: p.w.Dir, Wraps: p.w.Wraps}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := envelope.New(cfg)
	if err != nil {
		t.Fatalf("creating codec for %s: %v", p.ID, err)
	}

	return c
}

// Join adds p to roleName; the first member creates epoch 1. A new member
// receives the private keys of every epoch, as the registry's key chain
// lets it read history.
func (w *World) Join(t testing.TB, roleName string, p *Party) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.roles[roleName]
	if r == nil {
		r = &role{members: make(map[string]*Party), privs: make(map[uint32]hpke.PrivateKey)}
		w.roles[roleName] = r
		w.newEpochLocked(t, roleName, r)
	}
	r.members[p.ID] = p
	for e, k := range r.privs {
		p.Keys.AddRoleKey(roleName, e, k)
	}
	w.publishLocked(roleName, r)
}

// Remove takes p out of roleName and starts a new epoch that only the
// remaining members can open.
func (w *World) Remove(t testing.TB, roleName string, p *Party) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.roles[roleName]
	delete(r.members, p.ID)
	k := w.newEpochLocked(t, roleName, r)
	for _, m := range r.members {
		m.Keys.AddRoleKey(roleName, r.epoch, k)
	}
	w.publishLocked(roleName, r)
}

func (w *World) newEpochLocked(t testing.TB, name string, r *role) hpke.PrivateKey {
	t.Helper()
	r.epoch++
	k := HPKEKey(t, fmt.Sprintf("%s/epoch/%d", name, r.epoch))
	r.privs[r.epoch] = k

	return k
}

func (w *World) publishLocked(name string, r *role) {
	members := make([]string, 0, len(r.members))
	for id := range r.members {
		members = append(members, id)
	}
	w.Dir.SetRoleEpoch(envelope.RoleEpoch{Role: name, Epoch: r.epoch,
		Public: r.privs[r.epoch].PublicKey(), Members: members})
}
