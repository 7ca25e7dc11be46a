package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the NodeX release, set at link time with
// -ldflags "-X github.com/nodexsec/nodex/services/nodex/internal/cli.Version=v1.2.3".
var Version = "dev"

// versionInfo is the output of `nodex version`.
type versionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Revision  string `json:"revision,omitempty"`
	API       string `json:"api"`
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the nodex version, Go version and API version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versionInfo{Version: Version, GoVersion: runtime.Version(), API: "nodex.v1"}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v.Revision = s.Value
					}
				}
			}
			if g.json {
				return json.NewEncoder(g.stdio.Out).Encode(v)
			}
			_, err := fmt.Fprintf(g.stdio.Out, "nodex %s (%s, API %s)\n", v.Version, v.GoVersion, v.API)

			return err
		},
	}
}
