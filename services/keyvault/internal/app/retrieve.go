package app

import (
	"context"
	"strconv"
	"strings"

	"golang.org/x/time/rate"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/events"
	"github.com/nodexsec/nodex/services/keyvault/api"
	"github.com/nodexsec/nodex/services/keyvault/internal/domain"
	"github.com/nodexsec/nodex/services/keyvault/internal/sealing"
)

// Retrieve returns a key value to a caller the policy allows. The steps run
// in this order: policy, rate limit, quota, decrypt, audit. The value leaves
// only after its audit event is persisted.
func (s *Service) Retrieve(ctx context.Context, c Caller, req api.RetrieveRequest) (
	api.RetrieveReply, error) {
	const action = "retrieve"
	k, _, decision, err := s.loadDecided(ctx, c, action, req.Name, req.Purpose)
	if err != nil {
		return api.RetrieveReply{}, err
	}
	meta := versionMeta(k.Provider, req.Version)
	if req.Purpose != "" {
		meta[metaPurpose] = req.Purpose
	}
	fail := func(err error, severity string) (api.RetrieveReply, error) {
		return api.RetrieveReply{}, s.auditFailure(ctx, auditEvent{action: action, name: k.Name,
			caller: c, severity: severity, err: err, meta: meta})
	}

	v, err := k.Retrievable(req.Version, s.d.Now())
	if err != nil {
		return fail(codedError(err), events.SeverityLow)
	}
	meta[metaVersion] = strconv.Itoa(v.Number)
	if err := s.checkLimits(ctx, c, k, decision.Flags); err != nil {
		meta[metaThreatHint] = "api_abuse"
		return fail(err, events.SeverityHigh)
	}
	value, err := sealing.Open(ctx, s.d.KEK, sealing.Binding{Name: k.Name, Provider: k.Provider,
		Version: v.Number}, v.Sealed)
	if err != nil {
		s.log.ErrorContext(ctx, "sealed key failed to open", "key_id", k.Name,
			"version", v.Number, "error", err, "unexpected", true)
		return fail(errs.Internal.Wrap(err), events.SeverityCritical)
	}
	defer clear(value)

	if err := s.audit(ctx, auditEvent{action: action, name: k.Name, caller: c, meta: meta}); err != nil {
		return api.RetrieveReply{}, err
	}
	if err := s.d.Store.SetLastUsed(ctx, k.Name, s.d.Now()); err != nil {
		s.log.WarnContext(ctx, "last use not recorded", "key_id", k.Name, "error", err)
	}

	return api.RetrieveReply{Name: k.Name, Provider: k.Provider, Version: v.Number,
		Value: api.Plaintext(value)}, nil
}

// checkLimits applies the caller's rate limit and counts the retrieve
// against its daily quota and usage. A retrieve that later fails still
// counts, which errs on the side of the quota.
func (s *Service) checkLimits(ctx context.Context, c Caller, k *domain.Key, flags []string) error {
	if !s.limiter(c.ID).Allow() {
		return errs.RateLimited
	}
	if perMinute, ok := restrictedRate(flags); ok && !s.restrictedLimiter(c.ID, perMinute).Allow() {
		return errs.RateLimited.Withf("retrieves are restricted to %d per minute for this identity",
			perMinute)
	}
	quota := s.d.Limits.DailyQuota
	err := retryCAS(ctx, func() error {
		u, rev, err := s.d.Store.GetUsage(ctx, c.ID)
		if err != nil {
			return err
		}
		if quota > 0 && u.CountToday(s.d.Now()) >= quota {
			return errs.QuotaExceeded.Withf("%d retrieves per UTC day used up", quota)
		}
		u.Count(k.Provider, s.d.Now())

		return s.d.Store.PutUsage(ctx, c.ID, u, rev)
	})

	return codedError(err)
}

func (s *Service) limiter(id string) *rate.Limiter {
	l := s.d.Limits
	if l.RatePerSecond <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()

	lim, ok := s.limiters[id]
	if !ok {
		// NOTE: one limiter per caller id, kept for the life of the process.
		// Caller ids come from authenticated identities, so the map grows
		// with the registry, not with attacker input.
		lim = rate.NewLimiter(rate.Limit(l.RatePerSecond), max(l.Burst, 1))
		s.limiters[id] = lim
	}

	return lim
}

// rateFlag is the decision flag by which the policy tightens a caller's
// retrieve rate, for example after an API_ABUSE containment.
const rateFlag = "rate_limit_per_minute:"

// restrictedRate returns the tightest per-minute rate among flags.
func restrictedRate(flags []string) (int, bool) {
	best, found := 0, false
	for _, f := range flags {
		v, ok := strings.CutPrefix(f, rateFlag)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			// A malformed restriction still restricts: to nothing.
			n = 0
		}
		if !found || n < best {
			best, found = n, true
		}
	}

	return best, found
}

// restrictedLimiter returns the caller's limiter for a policy-imposed rate.
// A change of rate starts a fresh limiter.
func (s *Service) restrictedLimiter(id string, perMinute int) *rate.Limiter {
	key := id + "\x00" + strconv.Itoa(perMinute)
	s.limMu.Lock()
	defer s.limMu.Unlock()

	lim, ok := s.limiters[key]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(float64(perMinute)/60), 1)
		s.limiters[key] = lim
	}

	return lim
}
