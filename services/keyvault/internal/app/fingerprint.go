package app

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// fingerprintRecord is the service record holding the fingerprint HMAC key,
// sealed under the KEK like a key value.
const fingerprintRecord = "fingerprint_key"

// fingerprintBinding binds the sealed HMAC key. "-" cannot start a key
// name, so no stored key shares this binding.
var fingerprintBinding = sealing.Binding{Name: "-fingerprint", Provider: "-", Version: 1}

// FingerprintAlgorithm names the keyed hash of fingerprints.
const FingerprintAlgorithm = "HMAC-SHA256"

// Fingerprint returns the fingerprint of value under key.
func Fingerprint(key, value []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(value)

	return hex.EncodeToString(m.Sum(nil))
}

// fingerprintKey loads the HMAC key, creating it on first use. Replicas
// racing to create it agree through the create-only record.
func (s *Service) fingerprintKey(ctx context.Context) ([]byte, error) {
	s.fpMu.Lock()
	defer s.fpMu.Unlock()

	if s.fpKey != nil {
		return s.fpKey, nil
	}
	var sealed domain.Sealed
	err := s.d.Store.GetMeta(ctx, fingerprintRecord, &sealed)
	if errors.Is(err, domain.ErrKeyNotFound) {
		err = s.createFingerprintKey(ctx)
		if err == nil || errors.Is(err, domain.ErrKeyExists) {
			err = s.d.Store.GetMeta(ctx, fingerprintRecord, &sealed)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading fingerprint key: %w", err)
	}
	key, err := sealing.Open(ctx, s.d.KEK, fingerprintBinding, &sealed)
	if err != nil {
		return nil, fmt.Errorf("opening fingerprint key: %w", err)
	}
	s.fpKey = key

	return key, nil
}

func (s *Service) createFingerprintKey(ctx context.Context) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("drawing fingerprint key: %w", err)
	}
	defer clear(key)

	sealed, err := sealing.Seal(ctx, s.d.KEK, fingerprintBinding, key)
	if err != nil {
		return err
	}

	return s.d.Store.CreateMeta(ctx, fingerprintRecord, sealed)
}

// publishFingerprint publishes the HMAC of a new version. A failure is
// logged, not returned: the version is stored already, and [Service.Sweep]
// publishes missing fingerprints later.
func (s *Service) publishFingerprint(ctx context.Context, k *domain.Key, value domain.Secret, n int) {
	key, err := s.fingerprintKey(ctx)
	if err == nil {
		err = s.d.Store.PutFingerprint(ctx, api.Fingerprint{
			Name: k.Name, Provider: k.Provider, Version: n, Length: value.Len(),
			HMAC: Fingerprint(key, value.Reveal()),
		})
	}
	if err != nil {
		s.log.ErrorContext(ctx, "fingerprint not published",
			"key_id", k.Name, "version", n, "error", err)
	}
}

// publishMissingFingerprints publishes the fingerprint of every version
// whose value is still in use (active, grace or disabled) and has none.
func (s *Service) publishMissingFingerprints(ctx context.Context, k *domain.Key) error {
	for _, v := range k.Versions {
		if v.Sealed == nil || v.State == domain.StateRetired {
			continue
		}
		ok, err := s.d.Store.FingerprintExists(ctx, k.Name, v.Number)
		if err != nil {
			return err
		}
		if ok {
			continue
		}
		b := sealing.Binding{Name: k.Name, Provider: k.Provider, Version: v.Number}
		value, err := sealing.Open(ctx, s.d.KEK, b, v.Sealed)
		if err != nil {
			return err
		}
		secret := domain.NewSecret(value)
		clear(value)
		s.publishFingerprint(ctx, k, secret, v.Number)
		secret.Wipe()
	}

	return nil
}

func (s *Service) withdrawFingerprint(ctx context.Context, name string, n int) {
	if err := s.d.Store.DeleteFingerprint(ctx, name, n); err != nil {
		s.log.ErrorContext(ctx, "fingerprint not withdrawn", "key_id", name, "version", n,
			"error", err)
	}
}

// FingerprintKey hands the HMAC key to a caller the policy allows, which is
// meant to be the sandbox-runner's output scanner only.
func (s *Service) FingerprintKey(ctx context.Context, c Caller) (api.FingerprintKeyReply, error) {
	const action = "fingerprint_key"
	if _, err := s.authorize(ctx, c, action, target{}, ""); err != nil {
		return api.FingerprintKeyReply{}, err
	}
	key, err := s.fingerprintKey(ctx)
	if err != nil {
		return api.FingerprintKeyReply{}, codedError(err)
	}
	if err := s.audit(ctx, auditEvent{action: action, caller: c,
		severity: events.SeverityLow}); err != nil {
		return api.FingerprintKeyReply{}, err
	}

	return api.FingerprintKeyReply{Algorithm: FingerprintAlgorithm,
		Key: api.Plaintext(base64.StdEncoding.EncodeToString(key))}, nil
}
