package codesec_test

import (
	"flag"
	"io"
	"testing"

	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/services/codesec/codesec"
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
		{name: "env", env: map[string]string{"NODEX_CODESEC_REPLICAS": "3"}, want: 3},
		{name: "flag over env", args: []string{"-replicas", "2"},
			env: map[string]string{"NODEX_CODESEC_REPLICAS": "3"}, want: 2},
		{name: "too many", args: []string{"-replicas", "6"}, want: 6, wantErr: true},
		{name: "negative", args: []string{"-replicas", "-1"}, want: -1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg codesec.Config
			fs := flag.NewFlagSet("codesec", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			getenv := func(k string) string { return tt.env[k] }
			if err := conf.ApplyEnv(fs, "NODEX_CODESEC", getenv); err != nil {
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
