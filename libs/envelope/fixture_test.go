package envelope

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"sync"
	"testing"
	"time"
)

// world is a registry, a wrap store and a clock shared by test parties.
type world struct {
	dir   *StaticDirectory
	wraps *MemoryWraps
	mu    sync.Mutex
	now   time.Time
	roles map[string]*roleState
}

type roleState struct {
	epoch   uint32
	members map[string]*party
	privs   map[uint32]hpke.PrivateKey
}

// party is one identity with its keys and codec.
type party struct {
	id    string
	keys  *StaticKeys
	codec *Codec
	w     *world
}

func newWorld(t testing.TB) *world {
	t.Helper()

	return &world{
		dir: NewStaticDirectory(), wraps: NewMemoryWraps(),
		now:   time.UnixMilli(1_800_000_000_000),
		roles: make(map[string]*roleState),
	}
}

func (w *world) clock() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()

	return w.now
}

func (w *world) advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.now = w.now.Add(d)
}

// seed derives deterministic key material from a label.
func seed(label string) []byte {
	s := sha256.Sum256([]byte("nodex test seed " + label))

	return s[:]
}

func hpkeKey(t testing.TB, label string) hpke.PrivateKey {
	t.Helper()
	k, err := hpke.MLKEM768X25519().DeriveKeyPair(seed(label))
	if err != nil {
		t.Fatalf("deriving HPKE key %s: %v", label, err)
	}

	return k
}

// addParty registers id with roles, signing key version 1 and HPKE key
// version 1, and returns it with a codec.
func (w *world) addParty(t testing.TB, id string, roles ...string) *party {
	t.Helper()
	signing := ed25519.NewKeyFromSeed(seed(id + "/sign/1"))
	keys := NewStaticKeys(id, 1, signing)
	hk := hpkeKey(t, id+"/hpke/1")
	keys.AddHPKEKey(1, hk)
	w.dir.SetParty(Party{ID: id, Kind: "service", Status: StatusActive, Roles: roles})
	w.dir.SetSigningKey(id, SigningKey{Version: 1, Public: signing.Public().(ed25519.PublicKey)})
	w.dir.SetRecipientKey(RecipientKey{ID: id, Version: 1, Public: hk.PublicKey()})
	p := &party{id: id, keys: keys, w: w}
	p.codec = w.codec(t, keys, nil)
	for _, r := range roles {
		w.join(t, r, p)
	}

	return p
}

func (w *world) codec(t testing.TB, keys Keys, mutate func(*Config)) *Codec {
	t.Helper()
	cfg := Config{Keys: keys, Directory: w.dir, Wraps: w.wraps, Now: w.clock}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("creating codec: %v", err)
	}

	return c
}

// restart replaces p's codec with a fresh one, as a process restart does.
func (p *party) restart(t testing.TB) { p.codec = p.w.codec(t, p.keys, nil) }

// join adds p to role; the first member creates epoch 1.
func (w *world) join(t testing.TB, role string, p *party) {
	t.Helper()
	rs := w.roles[role]
	if rs == nil {
		rs = &roleState{members: make(map[string]*party), privs: make(map[uint32]hpke.PrivateKey)}
		w.roles[role] = rs
		w.newRoleEpoch(t, role)
	}
	rs.members[p.id] = p
	for e, k := range rs.privs {
		p.keys.AddRoleKey(role, e, k)
	}
	w.publishRole(role)
}

// removeMember starts a new epoch of role whose key only the remaining
// members get.
func (w *world) removeMember(t testing.TB, role string, p *party) {
	t.Helper()
	rs := w.roles[role]
	delete(rs.members, p.id)
	k := w.newRoleEpoch(t, role)
	for _, m := range rs.members {
		m.keys.AddRoleKey(role, rs.epoch, k)
	}
	w.publishRole(role)
}

func (w *world) newRoleEpoch(t testing.TB, role string) hpke.PrivateKey {
	t.Helper()
	rs := w.roles[role]
	rs.epoch++
	k := hpkeKey(t, role+"/epoch/"+string(rune('0'+rs.epoch)))
	rs.privs[rs.epoch] = k

	return k
}

func (w *world) publishRole(role string) {
	rs := w.roles[role]
	var members []string
	for id := range rs.members {
		members = append(members, id)
	}
	w.dir.SetRoleEpoch(RoleEpoch{Role: role, Epoch: rs.epoch,
		Public: rs.privs[rs.epoch].PublicKey(), Members: members})
}

// request seals a request from p to role on subject.
func (p *party) request(t testing.TB, subject, role string, body []byte) *Sealed {
	t.Helper()
	s, err := p.codec.Seal(context.Background(), Message{
		Kind: KindRequest, Subject: subject, To: []Target{ToRole(role)},
		ContentType: ContentTypeJSON, ReplySubject: "_INBOX." + p.id, Body: body,
	})
	if err != nil {
		t.Fatalf("sealing request: %v", err)
	}

	return s
}

func reqDelivery(s *Sealed, subject string) Delivery {
	return Delivery{Subject: subject, Reply: s.Header.ReplySubject}
}
