package sandbox

import (
	"flag"
	"io"
	"testing"

	"github.com/nodexsec/nodex/libs/conf"
)

func TestConfigReplicas(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    int
		wantErr bool
	}{
		{name: "default", want: 0},
		{name: "flag", args: []string{"-replicas", "3"}, want: 3},
		{name: "env", env: map[string]string{"NODEX_SANDBOX_REPLICAS": "3"}, want: 3},
		{name: "too many", args: []string{"-replicas", "6"}, want: 6, wantErr: true},
		{name: "negative", env: map[string]string{"NODEX_SANDBOX_REPLICAS": "-1"}, want: -1,
			wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			fs := flag.NewFlagSet("sandbox-runner", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			getenv := func(k string) string { return tt.env[k] }
			if err := conf.ApplyEnv(fs, "NODEX_SANDBOX", getenv); err != nil {
				t.Fatal(err)
			}
			if cfg.Replicas != tt.want {
				t.Errorf("got replicas %d, want %d", cfg.Replicas, tt.want)
			}
			err := cfg.WithDefaults().Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}
