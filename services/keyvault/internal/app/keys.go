package app

import (
	"context"
	"errors"
	"slices"
	"strconv"

	"github.com/nodexsec/nodex/libs/authz"
	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// Store validates a new key and stores it as version 1.
func (s *Service) Store(ctx context.Context, c Caller, req api.StoreRequest) (api.StoreReply, error) {
	const action = "store"
	if err := domain.ValidateName(req.Name); err != nil {
		return api.StoreReply{}, s.auditFailure(ctx, auditEvent{action: action, caller: c,
			err: codedError(err)})
	}
	if err := validateLabels(req.Labels); err != nil {
		return api.StoreReply{}, s.auditFailure(ctx, auditEvent{action: action, name: req.Name,
			caller: c, err: err})
	}
	t := target{name: req.Name, provider: req.Provider, labels: req.Labels}
	if _, err := s.authorize(ctx, c, action, t, ""); err != nil {
		return api.StoreReply{}, err
	}
	if err := validateValue(req.Provider, req.Value); err != nil {
		return api.StoreReply{}, s.auditFailure(ctx, auditEvent{action: action, name: req.Name,
			caller: c, err: codedError(err), meta: map[string]string{metaProvider: req.Provider}})
	}

	now := s.d.Now()
	k := &domain.Key{Name: req.Name, Provider: req.Provider, Labels: req.Labels, Created: now}
	v, err := s.newVersion(ctx, k, 1, req.Value)
	if err != nil {
		return api.StoreReply{}, codedError(err)
	}
	k.Versions = []domain.Version{v}

	meta := versionMeta(k.Provider, 1)
	meta[metaKEKVersion] = strconv.Itoa(v.Sealed.KEKVersion)
	if err := s.audit(ctx, auditEvent{action: action, name: k.Name, caller: c, meta: meta}); err != nil {
		return api.StoreReply{}, err
	}
	if err := s.d.Store.CreateKey(ctx, k); err != nil {
		s.auditAfter(ctx, action, k.Name, c, err)
		return api.StoreReply{}, codedError(err)
	}
	s.publishFingerprint(ctx, k, req.Value, 1)

	return api.StoreReply{Name: k.Name, Provider: k.Provider, Version: 1, Created: now}, nil
}

// Rotate adds a new version of an existing key. The versions active until
// now stay retrievable for the grace period and are then retired.
func (s *Service) Rotate(ctx context.Context, c Caller, req api.RotateRequest) (api.StoreReply, error) {
	const action = "rotate"
	k, _, err := s.loadForAction(ctx, c, action, req.Name, "")
	if err != nil {
		return api.StoreReply{}, err
	}
	if err := validateValue(k.Provider, req.Value); err != nil {
		return api.StoreReply{}, s.auditFailure(ctx, auditEvent{action: action, name: k.Name,
			caller: c, err: codedError(err), meta: map[string]string{metaProvider: k.Provider}})
	}
	if err := s.audit(ctx, auditEvent{action: action, name: k.Name, caller: c,
		meta: map[string]string{metaProvider: k.Provider}}); err != nil {
		return api.StoreReply{}, err
	}

	var created domain.Version
	err = s.updateKey(ctx, k.Name, func(k *domain.Key) error {
		v, err := s.newVersion(ctx, k, k.NextNumber(), req.Value)
		if err != nil {
			return err
		}
		k.Rotate(v, s.d.Now(), s.d.Grace)
		created = v

		return nil
	})
	if err != nil {
		s.auditAfter(ctx, action, k.Name, c, err)
		return api.StoreReply{}, codedError(err)
	}
	s.publishFingerprint(ctx, k, req.Value, created.Number)
	s.log.InfoContext(ctx, "key rotated", "key_id", k.Name, "version", created.Number)

	return api.StoreReply{Name: k.Name, Provider: k.Provider, Version: created.Number,
		Created: created.Created}, nil
}

// Delete destroys a key: the record holding every wrapped data key is
// purged, so no copy in the bucket can be opened again (crypto-shredding).
func (s *Service) Delete(ctx context.Context, c Caller, req api.DeleteRequest) (api.DeleteReply, error) {
	const action = "delete"
	k, _, err := s.loadForAction(ctx, c, action, req.Name, "")
	if err != nil {
		return api.DeleteReply{}, err
	}
	if err := s.audit(ctx, auditEvent{action: action, name: k.Name, caller: c,
		severity: events.SeverityLow, meta: map[string]string{metaProvider: k.Provider}}); err != nil {
		return api.DeleteReply{}, err
	}
	if err := s.d.Store.DeleteKey(ctx, k.Name); err != nil {
		s.auditAfter(ctx, action, k.Name, c, err)
		return api.DeleteReply{}, codedError(err)
	}
	destroyed := 0
	for _, v := range k.Versions {
		if v.Sealed != nil {
			destroyed++
		}
		s.withdrawFingerprint(ctx, k.Name, v.Number)
	}
	s.log.InfoContext(ctx, "key deleted", "key_id", k.Name, "versions", destroyed)

	return api.DeleteReply{Name: k.Name, VersionsDestroyed: destroyed}, nil
}

// Disable stops retrieval of one version or of all retrievable versions,
// keeping their sealed data. Their fingerprints stay published, since a
// leak of a disabled key is still a leak.
func (s *Service) Disable(ctx context.Context, c Caller, req api.DisableRequest) (api.DisableReply, error) {
	const action = "disable"
	k, _, err := s.loadForAction(ctx, c, action, req.Name, req.Reason)
	if err != nil {
		return api.DisableReply{}, err
	}
	meta := map[string]string{metaProvider: k.Provider, metaVersion: strconv.Itoa(req.Version)}
	if req.Reason != "" {
		meta[metaDisableReason] = req.Reason
	}
	if err := s.audit(ctx, auditEvent{action: action, name: k.Name, caller: c,
		severity: events.SeverityMedium, meta: meta}); err != nil {
		return api.DisableReply{}, err
	}

	var disabled []int
	err = s.updateKey(ctx, k.Name, func(k *domain.Key) error {
		before := slices.Clone(k.Versions)
		if err := k.Disable(req.Version); err != nil {
			return err
		}
		disabled = disabled[:0]
		for i, v := range k.Versions {
			if v.State == domain.StateDisabled && before[i].State != domain.StateDisabled {
				disabled = append(disabled, v.Number)
			}
		}

		return nil
	})
	if err != nil {
		s.auditAfter(ctx, action, k.Name, c, err)
		return api.DisableReply{}, codedError(err)
	}
	s.log.WarnContext(ctx, "key disabled", "key_id", k.Name, "versions", disabled)

	return api.DisableReply{Name: k.Name, Disabled: disabled}, nil
}

// loadForAction checks the name, loads the key and requests a policy decision. A key
// that does not exist is reported only to a caller the policy allows.
func (s *Service) loadForAction(ctx context.Context, c Caller, action, name, purpose string) (
	*domain.Key, uint64, error) {
	k, rev, _, err := s.loadDecided(ctx, c, action, name, purpose)

	return k, rev, err
}

// loadDecided is loadForAction that also returns the allowing decision, whose
// flags may tighten what the caller gets.
func (s *Service) loadDecided(ctx context.Context, c Caller, action, name, purpose string) (
	*domain.Key, uint64, authz.Decision, error) {
	var d authz.Decision
	if err := domain.ValidateName(name); err != nil {
		return nil, 0, d, s.auditFailure(ctx, auditEvent{action: action, caller: c,
			err: codedError(err)})
	}
	if err := validateText(purpose); err != nil {
		return nil, 0, d, s.auditFailure(ctx, auditEvent{action: action, name: name, caller: c,
			err: err})
	}
	k, rev, err := s.d.Store.GetKey(ctx, name)
	if err != nil && !errors.Is(err, domain.ErrKeyNotFound) {
		return nil, 0, d, codedError(err)
	}
	t := target{name: name}
	if k != nil {
		t = keyTarget(k)
	}
	d, derr := s.authorize(ctx, c, action, t, purpose)
	if derr != nil {
		return nil, 0, d, derr
	}
	if err != nil {
		return nil, 0, d, s.auditFailure(ctx, auditEvent{action: action, name: name, caller: c,
			err: codedError(err)})
	}

	return k, rev, d, nil
}

// updateKey applies change to the stored key with compare-and-set,
// retrying on concurrent updates.
func (s *Service) updateKey(ctx context.Context, name string, change func(*domain.Key) error) error {
	return retryCAS(ctx, func() error {
		k, rev, err := s.d.Store.GetKey(ctx, name)
		if err != nil {
			return err
		}
		if err := change(k); err != nil {
			return err
		}

		return s.d.Store.UpdateKey(ctx, k, rev)
	})
}

func (s *Service) newVersion(ctx context.Context, k *domain.Key, n int, value domain.Secret) (
	domain.Version, error) {
	b := sealing.Binding{Name: k.Name, Provider: k.Provider, Version: n}
	sealed, err := sealing.Seal(ctx, s.d.KEK, b, value.Reveal())
	if err != nil {
		return domain.Version{}, err
	}

	return domain.Version{Number: n, State: domain.StateActive, Created: s.d.Now(), Sealed: sealed}, nil
}

// auditAfter records that an operation, audited as attempted, then failed.
// It does not wait: the attempt is on record already.
func (s *Service) auditAfter(ctx context.Context, action, name string, c Caller, err error) {
	s.log.ErrorContext(ctx, "key operation failed after audit",
		"action", action, "key_id", name, "identity", c.ID, "error", err)
	s.d.Audit.Publish(ctx, auditEvent{action: action, name: name, caller: c,
		severity: events.SeverityLow, err: codedError(err)}.securityEvent())
}

// MaxTextLen is the maximum length in bytes of a purpose or reason. It
// keeps audit events within the event size limit of libs/events, so a long
// text cannot make the audit fail.
const MaxTextLen = 256

func validateText(text string) error {
	if len(text) > MaxTextLen {
		return errs.InvalidRequest.Withf("purpose or reason is %d bytes, max %d",
			len(text), MaxTextLen)
	}
	for _, r := range text {
		if r < 0x20 || r == 0x7f {
			return errs.InvalidRequest.Withf("purpose or reason contains a control character")
		}
	}
	if domain.ContainsKeyShape(text) {
		return errs.InvalidRequest.Withf("purpose or reason contains a value shaped like a " +
			"provider key; describe the purpose without key values, which would be kept in the " +
			"audit trail")
	}

	return nil
}

// Label limits: labels are policy attributes and show in listings.
const (
	maxLabels        = 16
	maxLabelValueLen = 256
)

// validateLabels checks label names and values. A value shaped like a
// provider key is rejected, since labels are printed by list.
func validateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return errs.InvalidRequest.Withf("%d labels, max %d", len(labels), maxLabels)
	}
	for k, v := range labels {
		if err := domain.ValidateName(k); err != nil {
			// The name is not quoted: it may be a pasted secret.
			return errs.InvalidRequest.Withf("a label name is invalid: use 1-63 characters of " +
				"a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
		}
		if len(v) > maxLabelValueLen {
			return errs.InvalidRequest.Withf("label %s is %d bytes, max %d", k, len(v),
				maxLabelValueLen)
		}
		for _, r := range v {
			if r < 0x20 || r == 0x7f {
				return errs.InvalidRequest.Withf("label %s contains a control character", k)
			}
		}
		if domain.ContainsKeyShape(v) {
			return errs.InvalidRequest.Withf("label %s has a value shaped like a provider key; "+
				"labels are listed in the clear, so put key values only in the key itself", k)
		}
	}

	return nil
}

func validateValue(provider string, value domain.Secret) error {
	p, err := domain.LookupProvider(provider)
	if err != nil {
		return err
	}

	return p.ValidateKey(value.Reveal())
}
