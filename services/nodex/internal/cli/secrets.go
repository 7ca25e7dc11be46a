package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/nodexsec/nodex/services/nodex/internal/deploy"
)

func newSecretsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Prepare secret files for a service container",
	}
	var from, to string
	install := &cobra.Command{
		Use:   "install --from DIR --to DIR",
		Short: "Copy secret files into DIR as mode 0400 files owned by the current user",
		Long: `install copies every file of --from into --to with mode 0400, owned by the
user running it. A Kubernetes init container runs it as the service's uid:
Secret volume files belong to root, and with a pod fsGroup they are group
readable (0440), which the NodeX credentials loader rejects. --to is an
emptyDir that the service container then mounts read-only.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usageError{errors.New("secrets install needs --from and --to")}
			}
			names, err := deploy.InstallSecrets(from, to)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdio.Out, "installed %d files into %s\n", len(names), to)

			return nil
		},
	}
	install.Flags().StringVar(&from, "from", "", "folder of the mounted Secret")
	install.Flags().StringVar(&to, "to", "", "folder to write the 0400 copies to")
	cmd.AddCommand(install)

	return cmd
}
