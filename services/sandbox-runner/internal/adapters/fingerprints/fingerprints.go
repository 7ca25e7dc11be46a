// Package fingerprints keeps the runner's copy of keyvault's key fingerprints.
// It requests the HMAC key from keyvault, then mirrors the
// NODEX_KEY_FINGERPRINTS bucket into a [scan.Fingerprints].
package fingerprints

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nodexsec/nodex/libs/bus"
	"github.com/nodexsec/nodex/services/sandbox-runner/internal/scan"
)

// Bucket, subject and role of keyvault's fingerprint data.
const (
	Bucket     = "NODEX_KEY_FINGERPRINTS"
	SubjectKey = "nodex.v1.keyvault.fingerprint_key"
	keyvault   = "service:keyvault"
)

type keyReply struct {
	Algorithm string `json:"algorithm"`
	Key       string `json:"key"`
}

// Load fetches the HMAC key and starts mirroring the bucket until ctx ends.
// It returns once the current entries are loaded.
func Load(ctx context.Context, c *bus.Client, log *slog.Logger) (*scan.Fingerprints, error) {
	var rep keyReply
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Request(reqCtx, SubjectKey, keyvault, struct{}{}, &rep); err != nil {
		return nil, fmt.Errorf("requesting the fingerprint key from keyvault: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(rep.Key)
	if err != nil || rep.Algorithm != "HMAC-SHA256" || len(key) != 32 {
		return nil, fmt.Errorf("invalid fingerprint key reply: algorithm %q, %d key bytes",
			rep.Algorithm, len(key))
	}
	kv, err := c.JetStream().KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s: %w", Bucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", Bucket, err)
	}
	fps := scan.NewFingerprints(key)
	loaded := make(chan struct{})
	go mirror(w, fps, loaded, log)
	select {
	case <-loaded:
		return fps, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// mirror applies bucket updates; entries are keyed fp.<name>.<version>, and a
// deleted key withdraws the entry it held.
func mirror(w jetstream.KeyWatcher, fps *scan.Fingerprints, loaded chan struct{}, log *slog.Logger) {
	byKey := map[string]string{} // KV key -> HMAC
	for e := range w.Updates() {
		if e == nil {
			close(loaded)
			continue
		}
		if !strings.HasPrefix(e.Key(), "fp.") {
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			fps.Delete(byKey[e.Key()])
			delete(byKey, e.Key())
			continue
		}
		var fp scan.Fingerprint
		if err := json.Unmarshal(e.Value(), &fp); err != nil || fp.Length <= 0 {
			log.Warn("invalid fingerprint entry skipped", "key", e.Key(), "error", err)
			continue
		}
		if old, ok := byKey[e.Key()]; ok {
			fps.Delete(old)
		}
		byKey[e.Key()] = fp.HMAC
		fps.Put(fp)
	}
}
