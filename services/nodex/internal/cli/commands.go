package cli

import "github.com/spf13/cobra"

// addCommands registers the commands beyond version.
func addCommands(root *cobra.Command, g *globals) {
	root.AddCommand(newDevCmd(g))
	root.AddCommand(newInitCmd(g))
	root.AddCommand(newKeysCmd(g))
	root.AddCommand(newAgentCmd(g))
	root.AddCommand(newAuthorityCmd(g))
	root.AddCommand(newIncidentsCmd(g))
	root.AddCommand(newThreatsCmd(g))
	root.AddCommand(newEventsCmd(g))
	root.AddCommand(newPolicyCmd(g))
	root.AddCommand(newRunCmd(g))
	root.AddCommand(newBackupCmd(g), newRestoreCmd(g))
	root.AddCommand(newReceiptsCmd(g))
	root.AddCommand(newPentestCmd(g))
	root.AddCommand(newSecretsCmd(g))
}
