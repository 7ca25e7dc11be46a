package config

import (
	"flag"

	"github.com/nodexsec/nodex/libs/conf"
)

// EnvPrefix is the prefix of the keyvault's environment variables.
const EnvPrefix = "NODEX_KEYVAULT"

// RegisterFlags adds one flag per field of c to fs, with c's current values
// as defaults. After fs.Parse, [conf.ApplyEnv] with [EnvPrefix] fills the
// flags not given from NODEX_KEYVAULT_<FLAG NAME>.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.KEKFile, "kek-file", c.KEKFile,
		"key encryption keyring file, mode 0600")
	fs.StringVar(&c.KEK, "kek", c.KEK,
		"key encryption keyring text, '<version> <base64 key>' entries separated by ';' "+
			"(prefer the environment: command lines are visible to other users)")
	fs.DurationVar(&c.Grace, "grace", c.Grace,
		"how long rotated key versions stay retrievable (0 means 24h)")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", c.SweepInterval,
		"how often expired key versions are retired (0 means 1m)")
	fs.Float64Var(&c.RatePerSecond, "rate", c.RatePerSecond,
		"retrieves per second per caller and process (0 means 5, negative disables)")
	fs.IntVar(&c.Burst, "burst", c.Burst, "retrieve burst per caller (0 means 20)")
	fs.IntVar(&c.DailyQuota, "daily-quota", c.DailyQuota,
		"retrieves per caller per UTC day (0 means 10000, negative disables)")
	fs.IntVar(&c.Replicas, "replicas", c.Replicas, "KV bucket replicas (0 means 1)")
}

// Load parses args into a Config, then fills unset flags from the
// environment through getenv.
func Load(args []string, getenv conf.Getenv) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("keyvault", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if err := conf.ApplyEnv(fs, EnvPrefix, getenv); err != nil {
		return Config{}, err
	}

	return c, nil
}
