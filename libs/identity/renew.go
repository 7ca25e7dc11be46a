package identity

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// Timings of the authority delegation. A delegation lasts AuthorityValidity
// (90 days). The holder of the root key renews it once less than
// DefaultRenewBefore (30 days) remains, and the heartbeat writer warns once
// less than DefaultWarnBefore (15 days) remains, which means the renewal is
// overdue by at least 15 days.
const (
	DefaultRenewBefore = AuthorityValidity / 3
	DefaultWarnBefore  = AuthorityValidity / 6
)

// ErrAuthorityExpiring is reported by the heartbeat writer while the
// delegation it signs under has less than its warning margin left. When
// the delegation expires, every reader rejects the heartbeat and fails
// closed, so an operator must run `nodex authority renew` before then.
var ErrAuthorityExpiring = errors.New("identity: authority delegation expires soon")

// Authority returns the verified delegation in the registry, or an error
// wrapping ErrNoAuthority if there is none.
func (a *Admin) Authority(ctx context.Context) (*Authority, error) {
	rec, _, err := a.current(ctx, KeyAuthority)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%w: registry has no %q record", ErrNoAuthority, KeyAuthority)
	}

	return rec.Authority, nil
}

// RenewAuthority delegates pub until now plus validity, unless the
// registry already delegates pub with more than renewBefore left. It
// returns the delegation in force afterwards and whether it wrote a new
// one. The write is a compare-and-set, so of two concurrent renewals one
// fails and the record is never overwritten blindly. Every view accepts
// the new record because its version rises and the root signs it, and the
// heartbeat writer needs no restart: its key stays the same.
func (a *Admin) RenewAuthority(ctx context.Context, pub ed25519.PublicKey,
	validity, renewBefore time.Duration,
) (*Authority, bool, error) {
	if validity <= renewBefore {
		return nil, false, fmt.Errorf("renewing authority: validity %s must exceed the "+
			"renewal margin %s, or every renewal would be due at once", validity, renewBefore)
	}
	prev, rev, err := a.current(ctx, KeyAuthority)
	if err != nil {
		return nil, false, err
	}
	now := a.now()
	if prev != nil && prev.Authority.Key.Equal(pub) &&
		prev.Authority.NotAfter.Sub(now) > renewBefore {
		return prev.Authority, false, nil
	}
	d := &Authority{Key: pub, NotAfter: now.Add(validity)}
	if err := a.write(ctx, &Record{Key: KeyAuthority, Authority: d}, prev, rev); err != nil {
		return nil, false, err
	}

	return d, true, nil
}

// CheckDelegation returns an error wrapping ErrNoAuthority if d does not
// delegate key or has expired at now, and one wrapping ErrAuthorityExpiring
// if less than warnBefore remains. A nil d means no delegation.
func CheckDelegation(d *Authority, key ed25519.PublicKey, now time.Time,
	warnBefore time.Duration,
) error {
	if d == nil {
		return fmt.Errorf("%w: registry has no %q record", ErrNoAuthority, KeyAuthority)
	}
	if !d.Key.Equal(key) {
		return fmt.Errorf("%w: the registry delegates another key than this writer's: "+
			"publish a delegation of this key or load the delegated key", ErrNoAuthority)
	}
	left := d.NotAfter.Sub(now)
	if left <= 0 {
		return fmt.Errorf("%w: delegation expired at %s: run nodex authority renew",
			ErrNoAuthority, d.NotAfter.Format(time.RFC3339))
	}
	if left < warnBefore {
		return fmt.Errorf("%w: delegation expires at %s, in %s: run nodex authority renew",
			ErrAuthorityExpiring, d.NotAfter.Format(time.RFC3339), left.Round(time.Minute))
	}

	return nil
}
