package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/identity"
)

func newAuthorityCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "authority",
		Short: "Show and renew the delegation of the authority key",
		Long: `authority manages the root-signed delegation of the authority key, which
signs the registry heartbeat and containment suspensions. A delegation lasts 90
days. When it expires, every party rejects the heartbeat and fails closed.
nodex dev renews it by itself; a deployment whose root key stays offline must
run "nodex authority renew" with the root key (NODEX_HOME/identities/root.key)
before the last 30 days run out. The broker logs a warning once less than 15
days remain.`,
	}
	cmd.AddCommand(newAuthorityStatusCmd(g), newAuthorityRenewCmd(g))

	return cmd
}

// authorityState is the output of the authority commands.
type authorityState struct {
	NotAfter time.Time `json:"not_after"`
	Left     string    `json:"left"`
	Renewed  bool      `json:"renewed"`
}

func printAuthority(g *globals, s authorityState) error {
	return g.output(s, func(w io.Writer) error {
		verb := "expires"
		if s.Renewed {
			verb = "renewed, expires"
		}
		_, err := fmt.Fprintf(w, "authority delegation %s %s (in %s)\n", verb,
			s.NotAfter.Format(time.RFC3339), s.Left)
		return err
	})
}

func newAuthorityStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Print when the authority delegation expires",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s authorityState
			err := g.withAdmin(cmd.Context(), func(a *identity.Admin) error {
				d, err := a.Authority(cmd.Context())
				if err != nil {
					return err
				}
				s = authorityState{NotAfter: d.NotAfter, Left: leftUntil(d.NotAfter)}
				return nil
			})
			if err != nil {
				return err
			}

			return printAuthority(g, s)
		},
	}
}

func newAuthorityRenewCmd(g *globals) *cobra.Command {
	var now bool
	cmd := &cobra.Command{
		Use:   "renew [--now]",
		Short: "Renew the authority delegation for 90 days once 30 or fewer remain",
		Long: `renew signs a new delegation of the key the registry currently delegates,
valid for 90 days, and waits until this command's own registry view trusts it.
Without --now it writes nothing while more than 30 days remain, so it is safe
to run from a daily job.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s authorityState
			err := g.withAdminView(cmd.Context(), func(a *identity.Admin, v *identity.View) error {
				var err error
				s, err = renewAuthority(cmd.Context(), a, v, now)
				return err
			})
			if err != nil {
				return err
			}

			return printAuthority(g, s)
		},
	}
	cmd.Flags().BoolVar(&now, "now", false, "renew even if more than 30 days remain")

	return cmd
}

// renewAuthority renews the delegation of the key in force, so the
// heartbeat writers keep their key and need no restart.
func renewAuthority(ctx context.Context, a *identity.Admin, v *identity.View, now bool,
) (authorityState, error) {
	cur, err := a.Authority(ctx)
	if err != nil {
		return authorityState{}, err
	}
	margin := identity.DefaultRenewBefore
	if now {
		// Any delegation has less than its full validity left.
		margin = identity.AuthorityValidity - time.Nanosecond
	}
	d, renewed, err := a.RenewAuthority(ctx, cur.Key, identity.AuthorityValidity, margin)
	if err != nil {
		return authorityState{}, err
	}
	if err := awaitDelegation(ctx, v, d.NotAfter); err != nil {
		return authorityState{}, err
	}

	return authorityState{NotAfter: d.NotAfter, Left: leftUntil(d.NotAfter), Renewed: renewed}, nil
}

// awaitDelegation waits until view trusts a delegation that lasts until
// notAfter, so the renewal is in force when the command returns.
func awaitDelegation(ctx context.Context, view *identity.View, notAfter time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, freshTimeout)
	defer cancel()
	for {
		if d, err := view.Delegation(); err == nil && d.NotAfter.Equal(notAfter) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("renewed delegation not in the registry view after %s: "+
				"check nodex authority status", freshTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func leftUntil(t time.Time) string {
	left := time.Until(t).Round(time.Hour)
	if left <= 0 {
		return "0h, expired"
	}

	return fmt.Sprintf("%dd%dh", int(left.Hours())/24, int(left.Hours())%24)
}
