package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/services/nodex/internal/deploy"
)

// imageUID is the user the NodeX images run as (see deploy/docker).
const imageUID = 65532

func newInitCmd(g *globals) *cobra.Command {
	opts := deploy.InitOptions{}
	cmd := &cobra.Command{
		Use:   "init --out DIR",
		Short: "Create the keys, credentials, certificates and broker files of a deployment",
		Long: "init writes every service identity, the demo agent and the operator, the root " +
			"and authority keys, the keyvault key encryption key, the broker nodes' " +
			"files (callout issuer seed, signed registry seed) and the TLS certificates " +
			"under DIR, each secret a 0600 file. Running it again keeps what exists.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Out == "" {
				return usageError{fmt.Errorf("missing --out DIR")}
			}
			if err := deploy.Init(cmd.Context(), opts); err != nil {
				return err
			}
			_, err := fmt.Fprintf(g.stdio.Out, "deployment files written to %s\n", opts.Out)

			return err
		},
	}
	cmd.Flags().StringVar(&opts.Out, "out", "", "output folder")
	cmd.Flags().StringSliceVar(&opts.Hosts, "host", nil,
		"DNS name or IP address of the broker certificate, repeatable (default: the "+
			"compose and Kubernetes broker names, localhost and 127.0.0.1)")
	cmd.Flags().IntVar(&opts.UID, "uid", imageUID,
		"owner of the broker and service folders, the images' user; -1 keeps the owner")
	cmd.Flags().IntVar(&opts.GID, "gid", imageUID, "group of those folders; -1 keeps it")

	return cmd
}
