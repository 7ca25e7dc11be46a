package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/errs"
	"github.com/nodexsec/nodex/libs/identity"
)

func newAgentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Create, list, suspend, unsuspend and revoke identities",
		Long: `agent manages identities in the registry. Each change is signed with the
operator root key, which these commands read from NODEX_HOME/identities/root.key,
and is written over the operator's connection. Suspensions and revocations take
effect within about a second and close the identity's open connections.`,
	}
	cmd.AddCommand(newAgentCreateCmd(g), newAgentListCmd(g),
		newAgentStatusCmd(g, "suspend", "Suspend an identity until unsuspend",
			(*identity.Admin).Suspend),
		newAgentStatusCmd(g, "unsuspend", "Reactivate a suspended identity",
			(*identity.Admin).Unsuspend),
		newAgentStatusCmd(g, "revoke", "Revoke an identity for good and rekey its roles",
			g.revokeAndRekey))

	return cmd
}

// revokeAndRekey revokes id, then starts a new epoch of every role it was a
// member of, so it cannot open messages sealed to those roles from now on.
// What it could already read stays readable to it: revocation is not
// retroactive.
func (g *globals) revokeAndRekey(a *identity.Admin, ctx context.Context, id string) error {
	if err := a.Revoke(ctx, id); err != nil {
		return err
	}
	opener, err := g.loadCreds(identity.OperatorID)
	if err != nil {
		return fmt.Errorf("loading the operator credentials to rekey roles: %w", err)
	}
	if _, err := a.RemoveFromRoles(ctx, id, opener); err != nil {
		return fmt.Errorf("rekeying the roles of revoked %s: %w", id, err)
	}

	return nil
}

// withAdmin connects as the operator and runs fn with a root-key admin.
func (g *globals) withAdmin(ctx context.Context, fn func(*identity.Admin) error) error {
	return g.withAdminView(ctx, func(a *identity.Admin, _ *identity.View) error { return fn(a) })
}

// withAdminView is withAdmin that also passes the operator's registry view.
func (g *globals) withAdminView(ctx context.Context,
	fn func(*identity.Admin, *identity.View) error,
) error {
	root, err := loadRootKey(g.homeDir())
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	p, err := g.openParty(ctx, identity.OperatorID)
	if err != nil {
		return err
	}
	defer p.Close(context.WithoutCancel(ctx))
	kv, err := p.JS.KeyValue(ctx, identity.Bucket)
	if err != nil {
		return fmt.Errorf("opening registry bucket %s: %w", identity.Bucket, err)
	}

	return fn(identity.NewAdmin(kv, root), p.View)
}

// rootKeyFile is the key file layout that libs/identity writes for
// NODEX_HOME/identities/root.key.
type rootKeyFile struct {
	Name string `json:"name"`
	Seed []byte `json:"seed"`
}

// loadRootKey reads the operator root key of the deployment in home. It
// reads the file itself because identity.Bootstrap would create every
// missing key and credentials file as a side effect.
func loadRootKey(home string) (identity.Signer, error) {
	path := filepath.Join(home, "identities", "root.key")
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return identity.Signer{}, fmt.Errorf("operator root key %s not found: run this on the "+
			"host of nodex dev, or pass --home with the state folder that holds it", path)
	}
	if err != nil {
		return identity.Signer{}, fmt.Errorf("reading operator root key: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		return identity.Signer{}, fmt.Errorf("operator root key %s is readable by others "+
			"(mode %o): chmod 600 it", path, info.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return identity.Signer{}, fmt.Errorf("reading operator root key: %w", err)
	}
	var f rootKeyFile
	if err := json.Unmarshal(b, &f); err != nil || f.Name != identity.SignerRoot ||
		len(f.Seed) != ed25519.SeedSize {
		return identity.Signer{}, fmt.Errorf("%s does not hold an operator root key", path)
	}

	return identity.Signer{Name: f.Name, Key: ed25519.NewKeyFromSeed(f.Seed)}, nil
}

// awaitStatus waits until view shows identity id with status, so that the
// change is in force when the command returns: the broker and the services
// read the same registry bucket through their own watches.
func awaitStatus(ctx context.Context, view *identity.View, id string, status identity.Status) error {
	ctx, cancel := context.WithTimeout(ctx, freshTimeout)
	defer cancel()
	for {
		if ident, err := view.Identity(id); err == nil && ident.Status == status {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("identity %q not %s in the registry view after %s", id, status,
				freshTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// identityError turns the registry's not-found error into the coded one,
// so that it exits with ExitNotFound.
func identityError(id string, err error) error {
	if errors.Is(err, identity.ErrNotFound) {
		return errs.NotFound.Withf("identity %q not found: see nodex agent list", id)
	}

	return err
}

func newAgentCreateCmd(g *globals) *cobra.Command {
	var roles []string
	var outDir string
	var force bool
	cmd := &cobra.Command{
		Use:   "create NAME [--role ROLE]... [--out DIR]",
		Short: "Issue an agent identity and write its credentials file",
		Long: `create issues an agent identity with the role "agent" plus every --role,
registers it, and writes DIR/NAME.creds (mode 0600). It prints the file's path.
Give the file only to that agent: it holds the agent's private keys.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if err := identity.ValidateID(id); err != nil {
				return usageError{fmt.Errorf("invalid identity name %q: %w", id, err)}
			}
			for _, r := range roles {
				if err := identity.ValidateRole(r); err != nil {
					return usageError{fmt.Errorf("invalid role %q: %w", r, err)}
				}
			}
			path := filepath.Join(outDir, id+".creds")
			if _, err := os.Stat(path); err == nil && !force {
				return fmt.Errorf("%s exists: pass --force to overwrite it", path)
			}
			all := append([]string{identity.RoleAgent}, roles...)
			slices.Sort(all)
			all = slices.Compact(all)

			var creds *identity.Credentials
			err := g.withAdminView(cmd.Context(), func(a *identity.Admin, v *identity.View) error {
				if _, err := a.Get(cmd.Context(), id); err == nil {
					return errs.Conflict.Withf("identity %q exists: pick another name", id)
				}
				c, err := a.Create(cmd.Context(), id, identity.KindAgent, all)
				if err != nil {
					return err
				}
				creds = c
				return awaitStatus(cmd.Context(), v, id, identity.StatusActive)
			})
			if err != nil {
				return err
			}
			if err := identity.WriteCreds(path, creds); err != nil {
				return fmt.Errorf("writing credentials of %q to %s: %w", id, path, err)
			}

			return g.output(map[string]any{"id": id, "roles": all, "creds": path},
				func(w io.Writer) error {
					_, err := fmt.Fprintln(w, path)
					return err
				})
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&roles, "role", nil, "role to grant besides \"agent\", e.g. key-reader:openai (repeatable)")
	f.StringVar(&outDir, "out", ".", "folder to write NAME.creds into")
	f.BoolVar(&force, "force", false, "overwrite an existing credentials file")

	return cmd
}

func newAgentListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List every identity with its kind, roles and status",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ids []*identity.Identity
			err := g.withAdmin(cmd.Context(), func(a *identity.Admin) error {
				var err error
				ids, err = a.List(cmd.Context())
				return err
			})
			if err != nil {
				return err
			}

			return g.output(ids, func(w io.Writer) error { return printIdentities(w, ids) })
		},
	}
}

func printIdentities(w io.Writer, ids []*identity.Identity) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tROLES\tCREATED")
	for _, id := range ids {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", id.ID, id.Kind, id.Status, joinOr(id.Roles),
			formatTime(id.Created))
	}

	return tw.Flush()
}

// newAgentStatusCmd builds suspend, unsuspend or revoke.
func newAgentStatusCmd(g *globals, verb, short string,
	change func(*identity.Admin, context.Context, string) error,
) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			var after *identity.Identity
			err := g.withAdminView(cmd.Context(), func(a *identity.Admin, v *identity.View) error {
				if _, err := a.Get(cmd.Context(), id); err != nil {
					return identityError(id, err)
				}
				if err := change(a, cmd.Context(), id); err != nil {
					return err
				}
				var err error
				if after, err = a.Get(cmd.Context(), id); err != nil {
					return err
				}
				return awaitStatus(cmd.Context(), v, id, after.Status)
			})
			if err != nil {
				return err
			}

			return g.output(after, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s is now %s\n", after.ID, after.Status)
				return err
			})
		},
	}
}
