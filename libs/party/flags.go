package party

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/nodexsec/nodex/libs/conf"
	"github.com/nodexsec/nodex/libs/identity"
	"github.com/nodexsec/nodex/libs/logx"
)

// ServiceFlags are the flags every service binary shares. Each has an
// environment twin: -server NATS_URL, -creds NODEX_CREDS, and the others
// NODEX_<SERVICE>_<FLAG> through conf.ApplyEnv.
type ServiceFlags struct {
	Server      string
	Creds       string
	LogLevel    string
	LogFormat   string
	CheckConfig bool
}

// Register adds the shared flags to fs.
func (f *ServiceFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Server, "server", "", "NATS server URL (env NATS_URL)")
	fs.StringVar(&f.Creds, "creds", "", "credentials file of this service's identity, mode 0600 (env NODEX_CREDS)")
	fs.StringVar(&f.LogLevel, "log-level", "info", "minimum log level: debug, info, warn or error")
	fs.StringVar(&f.LogFormat, "log-format", "json", "log format: json or text")
	fs.BoolVar(&f.CheckConfig, "check-config", false, "validate the configuration and exit 0 or 1")
}

// Resolve fills Server and Creds from NATS_URL and NODEX_CREDS when the flags
// were not given, and checks that both are set.
func (f *ServiceFlags) Resolve(getenv conf.Getenv) error {
	if f.Server == "" {
		f.Server = getenv("NATS_URL")
	}
	if f.Creds == "" {
		f.Creds = getenv("NODEX_CREDS")
	}
	if f.Server == "" {
		return fmt.Errorf("no NATS server: pass -server or set NATS_URL")
	}
	if f.Creds == "" {
		return fmt.Errorf("no credentials: pass -creds or set NODEX_CREDS")
	}

	return nil
}

// Logger builds the service's logger writing to w.
func (f *ServiceFlags) Logger(w io.Writer, service string) (*slog.Logger, error) {
	lvl, err := logx.ParseLevel(f.LogLevel)
	if err != nil {
		return nil, err
	}
	log, err := logx.New(w, logx.Options{Format: f.LogFormat, Level: lvl})
	if err != nil {
		return nil, err
	}

	return log.With(logx.KeyService, service), nil
}

// Open loads the credentials and opens the party; replicas is
// [Config.Replicas].
func (f *ServiceFlags) Open(ctx context.Context, log *slog.Logger, withAuthz bool,
	replicas int) (*Party, error) {
	creds, err := identity.LoadCreds(f.Creds)
	if err != nil {
		return nil, err
	}

	return Open(ctx, Config{URL: f.Server, Creds: creds, Log: log, Authz: withAuthz,
		Replicas: replicas})
}
