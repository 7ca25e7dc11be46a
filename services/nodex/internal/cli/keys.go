package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/services/keyvault/api"
)

// maxKeyValueBytes bounds a key value read from stdin or a file.
const maxKeyValueBytes = 64 << 10

func newKeysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Store, retrieve, rotate, list and delete provider keys in the keyvault",
		Long: `keys manages provider keys (API keys of model providers and other
services) in the keyvault. It runs as the operator by default; "keys get" also
works as an agent holding the role key-reader:<provider> (pass --creds).

A key value is read only from standard input or --file, never from the command
line, and only "keys get" prints it.`,
	}
	cmd.AddCommand(newKeysStoreCmd(g), newKeysGetCmd(g), newKeysRotateCmd(g),
		newKeysListCmd(g), newKeysDeleteCmd(g), newKeysRotateKEKCmd(g))

	return cmd
}

// readKeyValue reads a key value from file, or from stdin when file is
// empty or "-". One trailing newline is dropped, as `echo` and editors add
// it.
func readKeyValue(g *globals, file string) (api.Secret, error) {
	var r io.Reader = g.stdio.In
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return api.Secret{}, usageError{fmt.Errorf("opening key file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxKeyValueBytes+1))
	if err != nil {
		return api.Secret{}, fmt.Errorf("reading key value: %w", err)
	}
	defer clear(b)
	if len(b) > maxKeyValueBytes {
		return api.Secret{}, usageError{fmt.Errorf("key value is longer than %d bytes",
			maxKeyValueBytes)}
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return api.Secret{}, usageError{errors.New(
			"empty key value: pipe it on standard input or pass --file PATH")}
	}

	return api.NewSecret(b), nil
}

// parseLabels turns k=v pairs into a map.
func parseLabels(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	labels := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("invalid label %q: use key=value", p)}
		}
		labels[k] = v
	}

	return labels, nil
}

func newKeysStoreCmd(g *globals) *cobra.Command {
	var provider, file string
	var labels []string
	cmd := &cobra.Command{
		Use:   "store PROVIDER NAME [--label K=V]... [--file PATH]",
		Short: "Store the first version of a new key (value from stdin or --file)",
		Long: `store validates the key value against PROVIDER's key format and stores it
as version 1 of NAME. The value is read from standard input or --file, never
from the command line, where other local users could read it.

NAME is 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter
or digit. "store NAME --provider PROVIDER" is accepted too.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 {
				if provider != "" && provider != args[0] {
					return usageError{fmt.Errorf("provider given twice: %q and --provider %q", args[0], provider)}
				}
				provider, args = args[0], args[1:]
			}
			if provider == "" {
				return usageError{errors.New("missing provider: nodex keys store PROVIDER NAME, e.g. nodex keys store openai openai-prod")}
			}
			lbl, err := parseLabels(labels)
			if err != nil {
				return err
			}
			value, err := readKeyValue(g, file)
			if err != nil {
				return err
			}
			req := api.StoreRequest{Provider: provider, Name: args[0], Value: value, Labels: lbl}
			var reply api.StoreReply
			err = g.request(cmd.Context(), identity.OperatorID, api.SubjectStore, api.Role,
				req, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "stored %s (provider %s) version %d\n",
					reply.Name, reply.Provider, reply.Version)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&provider, "provider", "", "provider the key belongs to, e.g. openai (instead of the PROVIDER argument)")
	f.StringVar(&file, "file", "", "read the key value from this file instead of standard input")
	f.StringArrayVar(&labels, "label", nil, "label key=value to attach (repeatable)")

	return cmd
}

func newKeysGetCmd(g *globals) *cobra.Command {
	var version int
	var purpose string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Print a key value (the only command that prints one)",
		Long: `get prints the value of a key followed by a newline, or with --json the
value with its name, provider and version. It runs as the operator by default;
an agent holding key-reader:<provider> may run it with --creds.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.RetrieveRequest{Name: args[0], Version: version, Purpose: purpose}
			var reply api.RetrieveReply
			err := g.request(cmd.Context(), identity.OperatorID, api.SubjectRetrieve, api.Role,
				req, &reply)
			if err != nil {
				return err
			}
			if g.json {
				return printJSON(g.stdio.Out, reply)
			}
			_, err = fmt.Fprintln(g.stdio.Out, string(reply.Value))

			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&version, "version", 0, "key version to retrieve (0: the latest active version)")
	f.StringVar(&purpose, "purpose", "nodex keys get", "purpose recorded in the policy input and the audit event")

	return cmd
}

func newKeysRotateCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "rotate NAME [--file PATH]",
		Short: "Store a new version of a key (value from stdin or --file)",
		Long: `rotate stores a new version of an existing key. The previous version stays
retrievable for the keyvault's grace period, then retires.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := readKeyValue(g, file)
			if err != nil {
				return err
			}
			var reply api.StoreReply
			err = g.request(cmd.Context(), identity.OperatorID, api.SubjectRotate, api.Role,
				api.RotateRequest{Name: args[0], Value: value}, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "rotated %s to version %d\n", reply.Name, reply.Version)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "read the new key value from this file instead of standard input")

	return cmd
}

func newKeysListCmd(g *globals) *cobra.Command {
	var provider string
	cmd := &cobra.Command{
		Use:   "list [--provider PROVIDER]",
		Short: "List keys and their versions (never their values)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var reply api.ListReply
			err := g.request(cmd.Context(), identity.OperatorID, api.SubjectList, api.Role,
				api.ListRequest{Provider: provider}, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error { return printKeys(w, reply.Keys) })
		},
	}
	cmd.Flags().StringVar(&provider, "provider", "", "list only the keys of this provider")

	return cmd
}

func printKeys(w io.Writer, keys []api.KeyInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROVIDER\tVERSIONS\tCREATED\tLAST USED")
	for _, k := range keys {
		var versions []string
		for _, v := range k.Versions {
			versions = append(versions, fmt.Sprintf("%d:%s", v.Number, v.State))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.Name, k.Provider, joinOr(versions),
			formatTime(k.Created), formatTime(k.LastUsed))
	}

	return tw.Flush()
}

func newKeysDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Destroy a key and every version of it",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var reply api.DeleteReply
			err := g.request(cmd.Context(), identity.OperatorID, api.SubjectDelete, api.Role,
				api.DeleteRequest{Name: args[0]}, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "deleted %s (%s destroyed)\n",
					reply.Name, plural(reply.VersionsDestroyed, "version", "versions"))
				return err
			})
		},
	}
}

func newKeysRotateKEKCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-kek",
		Short: "Re-wrap every stored key under the newest key encryption key",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var reply api.RotateKEKReply
			err := g.request(cmd.Context(), identity.OperatorID, api.SubjectRotateKEK, api.Role,
				api.RotateKEKRequest{}, &reply)
			if err != nil {
				return err
			}

			return g.output(reply, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "key encryption key version %d: re-wrapped %d data keys of %d keys\n",
					reply.KEKVersion, reply.Rewrapped, reply.Keys)
				return err
			})
		},
	}
}
