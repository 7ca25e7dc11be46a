package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/adapters/kvstore"
	"github.com/nodexsec/nodex/services/keyvault/internal/app"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
)

func TestRetrieveWithoutRoleDeniedAndAudited(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	value := fakeKey(t, "openai")
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "openai",
		Name: "openai-prod", Value: value}); err != nil {
		t.Fatalf("Store: %v", err)
	}

	reply, err := h.svc.Retrieve(ctx, groqReader, api.RetrieveRequest{Name: "openai-prod"})
	if !errors.Is(err, errs.AccessDenied) {
		t.Fatalf("Retrieve by groq reader: error = %v, want access_denied", err)
	}
	if reply.Value != "" {
		t.Error("denied retrieve returned a value")
	}
	ev, ok := findEvent(h.streamEvents(t), "keyvault.retrieve", events.StatusFailure)
	if !ok {
		t.Fatal("no failed keyvault.retrieve event on the stream")
	}
	if ev.Subject != groqReader.ID || ev.Resource != "key:openai-prod" {
		t.Errorf("denial event subject %q resource %q, want %q and key:openai-prod",
			ev.Subject, ev.Resource, groqReader.ID)
	}
	if ev.Metadata["reason"] != "access_denied" || ev.Metadata["decision_id"] == "" {
		t.Errorf("denial event metadata = %v, want reason access_denied and a decision id",
			ev.Metadata)
	}

	// The reader of the right provider gets the value.
	got, err := h.svc.Retrieve(ctx, openAIReader, api.RetrieveRequest{Name: "openai-prod"})
	if err != nil {
		t.Fatalf("Retrieve by openai reader: %v", err)
	}
	if string(got.Value) != string(value.Reveal()) {
		t.Error("retrieved value differs from the stored one")
	}
}

func TestUnknownKeyHiddenFromUnauthorized(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	_, err := h.svc.Retrieve(context.Background(), groqReader, api.RetrieveRequest{Name: "nope"})
	if !errors.Is(err, errs.AccessDenied) {
		t.Errorf("error = %v, want access_denied rather than not_found", err)
	}
	_, err = h.svc.Retrieve(context.Background(), operator, api.RetrieveRequest{Name: "nope"})
	if !errors.Is(err, errs.NotFound) {
		t.Errorf("operator error = %v, want not_found", err)
	}
}

// TestKeyValueNeverLeaks runs store, retrieve, rotate, list, disable and
// delete, failing ones included, and searches everything the service emitted
// for the values.
func TestKeyValueNeverLeaks(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	v1, v2 := fakeKey(t, "anthropic"), fakeKey(t, "anthropic")
	var errsSeen []error
	note := func(err error) {
		if err != nil {
			errsSeen = append(errsSeen, err)
		}
	}

	_, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "anthropic", Name: "claude",
		Value: v1, Labels: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatalf("Store: %v", err)
	}
	_, err = h.svc.Store(ctx, operator, api.StoreRequest{Provider: "openai", Name: "wrong",
		Value: v1})
	note(err)
	_, err = h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "claude", Purpose: "chat"})
	note(err)
	_, err = h.svc.Retrieve(ctx, groqReader, api.RetrieveRequest{Name: "claude"})
	note(err)
	_, err = h.svc.Rotate(ctx, operator, api.RotateRequest{Name: "claude", Value: v2})
	note(err)
	_, err = h.svc.Store(ctx, operator, api.StoreRequest{Provider: "anthropic", Name: "claude",
		Value: v2})
	note(err)
	list, err := h.svc.List(ctx, operator, api.ListRequest{})
	note(err)
	_, err = h.svc.Disable(ctx, operator, api.DisableRequest{Name: "claude", Version: 1})
	note(err)
	_, err = h.svc.Delete(ctx, operator, api.DeleteRequest{Name: "claude"})
	note(err)
	if len(errsSeen) != 3 {
		t.Errorf("got %d failed operations, want 3 (wrong provider, denied, duplicate): %v",
			len(errsSeen), errsSeen)
	}

	listJSON, _ := json.Marshal(list)
	haystacks := map[string]string{"logs": h.logs.String(), "list reply": string(listJSON)}
	for i, e := range errsSeen {
		haystacks[fmt.Sprintf("error %d", i)] = e.Error() + fmt.Sprintf(" %+v %#v", e, e)
		haystacks[fmt.Sprintf("public error %d", i)] = errs.From(e).Public().Error()
	}
	for i, raw := range rawStream(t, h.js, events.StreamName) {
		haystacks[fmt.Sprintf("event %d", i)] = string(raw)
	}
	for _, bucket := range []string{"KV_" + kvstore.Bucket, "KV_" + api.FingerprintBucket} {
		for i, raw := range rawStream(t, h.js, bucket) {
			haystacks[fmt.Sprintf("%s message %d", bucket, i)] = string(raw)
		}
	}
	if len(rawStream(t, h.js, events.StreamName)) < 9 {
		t.Errorf("only %d events for 9 operations", len(rawStream(t, h.js, events.StreamName)))
	}
	for where, text := range haystacks {
		for i, v := range []domain.Secret{v1, v2} {
			body := string(v.Reveal())[len("sk-ant-api03-"):]
			if strings.Contains(text, body[:24]) {
				t.Errorf("value %d appears in %s", i+1, where)
			}
		}
	}
}

func TestSwappedCiphertextFailsToOpen(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	a, b := fakeKey(t, "groq"), fakeKey(t, "groq")
	for name, v := range map[string]domain.Secret{"alpha": a, "beta": b} {
		if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "groq", Name: name,
			Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	ka, _, err := h.store.GetKey(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	kb, rev, err := h.store.GetKey(ctx, "beta")
	if err != nil {
		t.Fatal(err)
	}
	kb.Versions[0].Sealed = ka.Versions[0].Sealed
	if err := h.store.UpdateKey(ctx, kb, rev); err != nil {
		t.Fatal(err)
	}

	reply, err := h.svc.Retrieve(ctx, groqReader, api.RetrieveRequest{Name: "beta"})
	if err == nil {
		t.Fatal("retrieve of a swapped ciphertext succeeded")
	}
	if reply.Value != "" {
		t.Error("failed retrieve returned a value")
	}
	if !errors.Is(err, errs.Internal) {
		t.Errorf("error = %v, want internal", err)
	}
}

func TestRetrieveFailsClosedWithoutEventsStream(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "groq", Name: "g",
		Value: fakeKey(t, "groq")}); err != nil {
		t.Fatal(err)
	}
	if err := h.js.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reply, err := h.svc.Retrieve(ctx, groqReader, api.RetrieveRequest{Name: "g"})
	if !errors.Is(err, errs.AuditUnavailable) {
		t.Fatalf("error = %v, want audit_unavailable", err)
	}
	if reply.Value != "" {
		t.Error("retrieve returned a value without an audit record")
	}
	_, err = h.svc.Store(ctx, operator, api.StoreRequest{Provider: "groq", Name: "h",
		Value: fakeKey(t, "groq")})
	if !errors.Is(err, errs.AuditUnavailable) {
		t.Errorf("Store error = %v, want audit_unavailable", err)
	}
	if _, _, err := h.store.GetKey(ctx, "h"); !errors.Is(err, domain.ErrKeyNotFound) {
		t.Errorf("unaudited store was written: GetKey error = %v", err)
	}
}

func TestRotationGracePeriod(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	v1, v2 := fakeKey(t, "google"), fakeKey(t, "google")
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "google", Name: "gem",
		Value: v1}); err != nil {
		t.Fatal(err)
	}
	rot, err := h.svc.Rotate(ctx, operator, api.RotateRequest{Name: "gem", Value: v2})
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if rot.Version != 2 {
		t.Errorf("rotated version = %d, want 2", rot.Version)
	}

	latest, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "gem"})
	if err != nil || string(latest.Value) != string(v2.Reveal()) || latest.Version != 2 {
		t.Fatalf("latest after rotate: version %d, err %v; want version 2 with the new value",
			latest.Version, err)
	}
	h.clock.Advance(59 * time.Minute)
	old, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "gem", Version: 1})
	if err != nil || string(old.Value) != string(v1.Reveal()) {
		t.Fatalf("version 1 inside grace: err %v, or value differs", err)
	}
	if n := countFingerprints(t, h); n != 2 {
		t.Errorf("fingerprints inside grace = %d, want 2", n)
	}

	h.clock.Advance(time.Minute)
	if _, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "gem",
		Version: 1}); !errors.Is(err, errs.NotFound) {
		t.Errorf("version 1 after grace: error = %v, want not_found", err)
	}
	if err := h.svc.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	k, _, err := h.store.GetKey(ctx, "gem")
	if err != nil {
		t.Fatal(err)
	}
	if k.Versions[0].State != domain.StateRetired || k.Versions[0].Sealed != nil {
		t.Errorf("version 1 after sweep: state %s, sealed kept %v",
			k.Versions[0].State, k.Versions[0].Sealed != nil)
	}
	if n := countFingerprints(t, h); n != 1 {
		t.Errorf("fingerprints after sweep = %d, want 1", n)
	}
}

func countFingerprints(t *testing.T, h *harness) int {
	t.Helper()
	kv, err := h.js.KeyValue(context.Background(), api.FingerprintBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(context.Background())
	if err != nil && !strings.Contains(err.Error(), "no keys found") {
		t.Fatal(err)
	}

	return len(keys)
}

func TestRotateKEKLosesNothing(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	want := map[string]map[int]string{}
	for i := range 5 {
		name := fmt.Sprintf("key-%d", i)
		want[name] = map[int]string{}
		v := fakeKey(t, "mistral")
		if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "mistral",
			Name: name, Value: v}); err != nil {
			t.Fatal(err)
		}
		want[name][1] = string(v.Reveal())
		v = fakeKey(t, "mistral")
		if _, err := h.svc.Rotate(ctx, operator, api.RotateRequest{Name: name,
			Value: v}); err != nil {
			t.Fatal(err)
		}
		want[name][2] = string(v.Reveal())
	}

	// Retrieves keep working while the KEK rotates.
	stop := make(chan struct{})
	var failures, done atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "key-0"}); err != nil {
				failures.Add(1)
			}
			done.Add(1)
		}
	})
	reply, err := h.svc.RotateKEK(ctx, operator, api.RotateKEKRequest{})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("RotateKEK: %v", err)
	}
	if failures.Load() != 0 {
		t.Errorf("%d of %d retrieves failed during KEK rotation", failures.Load(), done.Load())
	}
	if reply.KEKVersion != 2 || reply.Rewrapped != 11 || reply.Keys != 5 {
		t.Errorf("reply = %+v, want KEK version 2, 11 rewrapped (10 versions and the "+
			"fingerprint key), 5 keys", reply)
	}

	for name, versions := range want {
		k, _, err := h.store.GetKey(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range k.Versions {
			if v.Sealed.KEKVersion != 2 {
				t.Errorf("%s version %d wrapped under KEK %d, want 2", name, v.Number,
					v.Sealed.KEKVersion)
			}
		}
		for n, value := range versions {
			got, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: name, Version: n})
			if err != nil || string(got.Value) != value {
				t.Errorf("%s version %d after KEK rotation: err %v, or value differs", name, n, err)
			}
		}
	}
}

func TestRestartLosesNothing(t *testing.T) {
	ctx := context.Background()
	dataDir := t.TempDir()
	first := newHarness(t, harnessOptions{dataDir: dataDir})
	value := fakeKey(t, "huggingface")
	if _, err := first.svc.Store(ctx, operator, api.StoreRequest{Provider: "huggingface",
		Name: "hf", Value: value}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "hf"}); err != nil {
		t.Fatal(err)
	}
	_ = first.pub.Close(ctx)
	first.srv.Shutdown()
	first.srv.WaitForShutdown()

	second := newHarness(t, harnessOptions{dataDir: dataDir, kekDir: first.kekDir})
	got, err := second.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "hf"})
	if err != nil {
		t.Fatalf("Retrieve after restart: %v", err)
	}
	if string(got.Value) != string(value.Reveal()) {
		t.Error("value after restart differs")
	}
	list, err := second.svc.List(ctx, operator, api.ListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Keys) != 1 || list.Keys[0].LastUsed.IsZero() {
		t.Errorf("list after restart = %+v, want one key with a last use", list.Keys)
	}
}

func TestMalformedKeysRejectedWithoutEcho(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	for _, p := range domain.Providers {
		good := p.Formats[0].Fake()
		bad := append(good[:len(good)-1:len(good)-1], '#')
		_, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: p.ID, Name: "k-" +
			strings.ReplaceAll(p.ID, "_", "-"), Value: domain.NewSecret(bad)})
		if !errors.Is(err, errs.KeyFormatInvalid) {
			t.Errorf("%s: error = %v, want key_format_invalid", p.ID, err)
			continue
		}
		needle := string(bad[len(bad)/2 : len(bad)/2+10])
		if strings.Contains(err.Error(), needle) || strings.Contains(h.logs.String(), needle) {
			t.Errorf("%s: the rejected value is echoed", p.ID)
		}
	}
	for i, raw := range rawStream(t, h.js, events.StreamName) {
		if strings.Contains(string(raw), "#") {
			t.Errorf("event %d may contain a rejected value: %s", i, raw)
		}
	}
}

func TestRateLimitAndQuotaAreAbuse(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{limits: app.Limits{RatePerSecond: 0.001, Burst: 5,
		DailyQuota: 3}})
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "groq", Name: "g",
		Value: fakeKey(t, "groq")}); err != nil {
		t.Fatal(err)
	}
	retrieve := func(c app.Caller) error {
		_, err := h.svc.Retrieve(ctx, c, api.RetrieveRequest{Name: "g"})
		return err
	}

	wantErrs := []error{nil, nil, nil, errs.QuotaExceeded, errs.QuotaExceeded, errs.RateLimited}
	for i, want := range wantErrs {
		err := retrieve(groqReader)
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Fatalf("retrieve %d: error = %v, want %v", i+1, err, want)
		}
		if want == nil {
			continue
		}
		ev, ok := findEvent(h.streamEvents(t), "keyvault.retrieve", events.StatusFailure)
		if !ok || ev.Severity != events.SeverityHigh || ev.Metadata["threat_hint"] != "api_abuse" {
			t.Errorf("retrieve %d: event = %+v, want high severity, threat_hint api_abuse", i+1, ev)
		}
	}

	for i := range 3 {
		if err := retrieve(operator); err != nil {
			t.Fatalf("operator retrieve %d: %v", i+1, err)
		}
	}
	if err := retrieve(operator); !errors.Is(err, errs.QuotaExceeded) {
		t.Fatalf("fourth operator retrieve: error = %v, want quota_exceeded", err)
	}
	h.clock.Advance(24 * time.Hour)
	if err := retrieve(operator); err != nil {
		t.Errorf("retrieve on the next UTC day: %v", err)
	}
	u, _, err := h.store.GetUsage(ctx, operator.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Providers["groq"].Count; got != 4 {
		t.Errorf("operator groq usage count = %d, want 4", got)
	}
}

func TestDisableStopsRetrieve(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "cohere", Name: "c",
		Value: fakeKey(t, "cohere")}); err != nil {
		t.Fatal(err)
	}
	reply, err := h.svc.Disable(ctx, operator, api.DisableRequest{Name: "c", Reason: "leaked"})
	if err != nil {
		t.Fatalf("Disable: %v", err)
	}
	if len(reply.Disabled) != 1 || reply.Disabled[0] != 1 {
		t.Errorf("disabled = %v, want [1]", reply.Disabled)
	}
	if _, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "c"}); !errors.Is(err, errs.NotFound) {
		t.Errorf("retrieve of a disabled key: error = %v, want not_found", err)
	}
	if n := countFingerprints(t, h); n != 1 {
		t.Errorf("fingerprints of a disabled key = %d, want 1 (leaks still matter)", n)
	}
}

func TestFingerprintMatchesValue(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	value := fakeKey(t, "xai")
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "xai", Name: "x",
		Value: value}); err != nil {
		t.Fatal(err)
	}
	sandbox := app.Caller{ID: "sandbox-runner", Kind: "service",
		Roles: []string{"service:sandbox"}, Status: "active"}
	if _, err := h.svc.FingerprintKey(ctx, groqReader); !errors.Is(err, errs.AccessDenied) {
		t.Errorf("fingerprint key for an agent: error = %v, want access_denied", err)
	}
	fk, err := h.svc.FingerprintKey(ctx, sandbox)
	if err != nil {
		t.Fatalf("FingerprintKey: %v", err)
	}
	key, err := decodeB64(string(fk.Key))
	if err != nil {
		t.Fatal(err)
	}
	fps := readAll[api.Fingerprint](t, h.js, "KV_"+api.FingerprintBucket)
	if len(fps) != 1 {
		t.Fatalf("got %d fingerprints, want 1", len(fps))
	}
	if fps[0].HMAC != app.Fingerprint(key, value.Reveal()) || fps[0].Length != value.Len() {
		t.Errorf("fingerprint %+v does not match the value", fps[0])
	}

	// A fingerprint lost after a rotation comes back with the next sweep,
	// also when an earlier version still has its own.
	if _, err := h.svc.Rotate(ctx, operator, api.RotateRequest{Name: "x",
		Value: fakeKey(t, "xai")}); err != nil {
		t.Fatal(err)
	}
	if err := h.store.DeleteFingerprint(ctx, "x", 2); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Sweep(ctx); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if ok, err := h.store.FingerprintExists(ctx, "x", 2); err != nil || !ok {
		t.Errorf("fingerprint of version 2 after sweep: exists %v, error %v; want republished",
			ok, err)
	}
}

func TestLongPurposeRejectedAndAudited(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "groq", Name: "g",
		Value: fakeKey(t, "groq")}); err != nil {
		t.Fatal(err)
	}
	for name, purpose := range map[string]string{
		"too long": strings.Repeat("p", app.MaxTextLen+1), "newline": "a\nb",
	} {
		_, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "g", Purpose: purpose})
		if !errors.Is(err, errs.InvalidRequest) {
			t.Errorf("%s: error = %v, want invalid_request", name, err)
		}
	}
	ev, ok := findEvent(h.streamEvents(t), "keyvault.retrieve", events.StatusFailure)
	if !ok || ev.Metadata["reason"] != "invalid_request" {
		t.Errorf("rejected purpose event = %+v, want reason invalid_request", ev)
	}
}

func TestDeleteShredsDataKeys(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{})
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "perplexity", Name: "p",
		Value: fakeKey(t, "perplexity")}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Rotate(ctx, operator, api.RotateRequest{Name: "p",
		Value: fakeKey(t, "perplexity")}); err != nil {
		t.Fatal(err)
	}
	k, _, err := h.store.GetKey(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var wrapped []string
	for _, v := range k.Versions {
		enc, _ := json.Marshal(v.Sealed.WrappedDEK)
		wrapped = append(wrapped, strings.Trim(string(enc), `"`))
	}

	reply, err := h.svc.Delete(ctx, operator, api.DeleteRequest{Name: "p"})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if reply.VersionsDestroyed != 2 {
		t.Errorf("versions destroyed = %d, want 2", reply.VersionsDestroyed)
	}
	for i, raw := range rawStream(t, h.js, "KV_"+kvstore.Bucket) {
		for n, w := range wrapped {
			if strings.Contains(string(raw), w) {
				t.Errorf("bucket message %d still holds the wrapped data key of version %d", i, n+1)
			}
		}
	}
	if n := countFingerprints(t, h); n != 0 {
		t.Errorf("fingerprints after delete = %d, want 0", n)
	}
	if _, err := h.svc.Retrieve(ctx, operator, api.RetrieveRequest{Name: "p"}); !errors.Is(err, errs.NotFound) {
		t.Errorf("retrieve after delete: error = %v, want not_found", err)
	}
}

// TestPolicyRateFlagTightensRetrieves checks that a rate_limit_per_minute
// flag on the allowing decision limits the caller below the service's own
// rate, while other callers keep theirs.
func TestPolicyRateFlagTightensRetrieves(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, harnessOptions{limits: app.Limits{RatePerSecond: 100, Burst: 100}})
	if _, err := h.svc.Store(ctx, operator, api.StoreRequest{Provider: "groq", Name: "g",
		Value: fakeKey(t, "groq")}); err != nil {
		t.Fatal(err)
	}
	throttled := app.Caller{ID: "agent-throttled", Kind: "agent",
		Roles: []string{"key-reader:groq"}, Status: "active"}

	if _, err := h.svc.Retrieve(ctx, throttled, api.RetrieveRequest{Name: "g"}); err != nil {
		t.Fatalf("first retrieve under the restriction: %v", err)
	}
	_, err := h.svc.Retrieve(ctx, throttled, api.RetrieveRequest{Name: "g"})
	if !errors.Is(err, errs.RateLimited) {
		t.Fatalf("second retrieve within a minute: error = %v, want rate_limited", err)
	}
	for i := range 3 {
		if _, err := h.svc.Retrieve(ctx, groqReader, api.RetrieveRequest{Name: "g"}); err != nil {
			t.Fatalf("unrestricted retrieve %d: %v", i+1, err)
		}
	}
}
