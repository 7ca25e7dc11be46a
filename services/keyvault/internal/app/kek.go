package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// RotateKEK adds a KEK version when the keyring can be written, then
// re-wraps every data key wrapped under an older version. Each key is
// rewritten with compare-and-set while retrieves go on: the keyring keeps
// the old versions, so a record not yet re-wrapped still opens.
func (s *Service) RotateKEK(ctx context.Context, c Caller, _ api.RotateKEKRequest) (
	api.RotateKEKReply, error) {
	const action = "rotate_kek"
	if _, err := s.authorize(ctx, c, action, target{}, ""); err != nil {
		return api.RotateKEKReply{}, err
	}
	if err := s.audit(ctx, auditEvent{action: action, caller: c,
		severity: events.SeverityLow}); err != nil {
		return api.RotateKEKReply{}, err
	}
	if r, ok := s.d.KEK.(KEKRotator); ok {
		v, err := r.Rotate()
		if err != nil {
			s.auditAfter(ctx, action, "", c, err)
			return api.RotateKEKReply{}, codedError(err)
		}
		s.log.InfoContext(ctx, "key encryption key added", "kek_version", v)
	}

	reply, err := s.rewrapAll(ctx)
	if err != nil {
		s.auditAfter(ctx, action, "", c, err)
		return reply, codedError(err)
	}
	s.d.Audit.Publish(ctx, auditEvent{action: action, caller: c, meta: map[string]string{
		metaKEKVersion: strconv.Itoa(reply.KEKVersion), "rewrapped": strconv.Itoa(reply.Rewrapped),
	}}.securityEvent())
	s.log.InfoContext(ctx, "data keys rewrapped", "kek_version", reply.KEKVersion,
		"rewrapped", reply.Rewrapped, "keys", reply.Keys)

	return reply, nil
}

func (s *Service) rewrapAll(ctx context.Context) (api.RotateKEKReply, error) {
	current := s.d.KEK.CurrentVersion()
	reply := api.RotateKEKReply{KEKVersion: current}
	keys, err := s.d.Store.ListKeys(ctx)
	if err != nil {
		return reply, err
	}
	for _, k := range keys {
		n, err := s.rewrapKey(ctx, k.Name, current)
		if errors.Is(err, domain.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return reply, err
		}
		reply.Rewrapped += n
		reply.Keys++
	}
	n, err := s.rewrapFingerprintKey(ctx, current)
	reply.Rewrapped += n

	return reply, err
}

func (s *Service) rewrapKey(ctx context.Context, name string, current int) (int, error) {
	var count int
	err := s.updateKey(ctx, name, func(k *domain.Key) error {
		count = 0
		for i := range k.Versions {
			v := &k.Versions[i]
			if v.Sealed == nil || v.Sealed.KEKVersion == current {
				continue
			}
			b := sealing.Binding{Name: k.Name, Provider: k.Provider, Version: v.Number}
			r, err := sealing.Rewrap(ctx, s.d.KEK, b, v.Sealed)
			if err != nil {
				return err
			}
			v.Sealed = r
			count++
		}
		if count == 0 {
			return errNothingToDo
		}

		return nil
	})
	if errors.Is(err, errNothingToDo) {
		return 0, nil
	}

	return count, err
}

var errNothingToDo = errors.New("nothing to rewrap")

func (s *Service) rewrapFingerprintKey(ctx context.Context, current int) (int, error) {
	var sealed domain.Sealed
	err := s.d.Store.GetMeta(ctx, fingerprintRecord, &sealed)
	if errors.Is(err, domain.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil || sealed.KEKVersion == current {
		return 0, err
	}
	r, err := sealing.Rewrap(ctx, s.d.KEK, fingerprintBinding, &sealed)
	if err != nil {
		return 0, fmt.Errorf("rewrapping fingerprint key: %w", err)
	}

	return 1, s.d.Store.UpdateMeta(ctx, fingerprintRecord, r)
}

// Sweep retires grace versions whose period has ended, destroying their
// data keys and withdrawing their fingerprints, and publishes fingerprints
// that an earlier failure left missing. Run calls it periodically.
func (s *Service) Sweep(ctx context.Context) error {
	keys, err := s.d.Store.ListKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.publishMissingFingerprints(ctx, k); err != nil {
			s.log.WarnContext(ctx, "missing fingerprints not published", "key_id", k.Name,
				"error", err)
		}
		if !k.Clone().RetireExpired(s.d.Now()) {
			continue
		}
		var retired []int
		err := s.updateKey(ctx, k.Name, func(k *domain.Key) error {
			retired = retired[:0]
			before := k.Clone()
			if !k.RetireExpired(s.d.Now()) {
				return errNothingToDo
			}
			for i, v := range k.Versions {
				if v.State == domain.StateRetired && before.Versions[i].State != domain.StateRetired {
					retired = append(retired, v.Number)
				}
			}

			return nil
		})
		if errors.Is(err, errNothingToDo) || errors.Is(err, domain.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("retiring versions of %q: %w", k.Name, err)
		}
		s.afterRetire(ctx, k, retired)
	}

	return nil
}

func (s *Service) afterRetire(ctx context.Context, k *domain.Key, retired []int) {
	for _, n := range retired {
		s.withdrawFingerprint(ctx, k.Name, n)
		s.d.Audit.Publish(ctx, auditEvent{action: "retire", name: k.Name,
			caller: Caller{ID: ""}, meta: versionMeta(k.Provider, n)}.securityEvent())
	}
	s.log.InfoContext(ctx, "key versions retired", "key_id", k.Name, "versions", retired)
}
