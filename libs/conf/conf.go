// Package conf reads NodeX configuration with one precedence everywhere:
// command-line flags, then environment variables, then defaults. It is the
// only package that reads the process environment, so every setting a
// program honours can be found from here.
package conf

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Getenv reads one environment variable. Programs pass os.Getenv; tests pass
// a map lookup.
type Getenv func(string) string

// OSEnv returns os.Getenv as a [Getenv].
func OSEnv() Getenv { return os.Getenv }

// EnvName returns the environment twin of a flag: prefix, an underscore, and
// the flag name upper-cased with dashes as underscores. EnvName("NODEX_KEYVAULT",
// "kek-file") is "NODEX_KEYVAULT_KEK_FILE".
func EnvName(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// its environment twin (see [EnvName]), if that variable is set and not
// empty. Call it after fs.Parse. The error names the variable and the value's
// problem; a secret's value is never echoed because flag errors only name the
// flag.
func ApplyEnv(fs *flag.FlagSet, prefix string, getenv Getenv) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var firstErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || firstErr != nil {
			return
		}
		name := EnvName(prefix, f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = fmt.Errorf("conf: environment variable %s: invalid value for -%s: %w",
				name, f.Name, err)
		}
	})

	return firstErr
}

// Masked returns the exported fields of the struct v (or pointer to struct)
// as a map for a one-time configuration log line. Fields tagged
// `conf:"secret"` show "[REDACTED]" when set and "" when empty, so the log
// tells whether a secret was configured without showing it. Nested structs
// are flattened with dotted names.
func Masked(v any) map[string]any {
	out := map[string]any{}
	maskInto(out, "", reflect.ValueOf(v))

	return out
}

func maskInto(out map[string]any, prefix string, rv reflect.Value) {
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return
	}
	rt := rv.Type()
	for i := range rt.NumField() {
		f := rt.Field(i)
		if !f.IsExported() {
			continue
		}
		name := prefix + f.Name
		fv := rv.Field(i)
		switch {
		case f.Tag.Get("conf") == "secret":
			if fv.IsZero() {
				out[name] = ""
			} else {
				out[name] = "[REDACTED]"
			}
		case fv.Kind() == reflect.Struct && f.Type.PkgPath() != "time":
			maskInto(out, name+".", fv)
		default:
			out[name] = fv.Interface()
		}
	}
}

// Debug knobs are NODEX_DEBUG_* switches registered in one place, so a
// program can log every knob that is on at start.
var (
	knobsMu sync.Mutex
	knobs   = map[string]string{}
)

// Knob registers the debug knob name (which must start with NODEX_DEBUG_) and
// returns its current value from getenv. It panics on another prefix, which is
// a programming error.
func Knob(name string, getenv Getenv) string {
	if !strings.HasPrefix(name, "NODEX_DEBUG_") {
		panic("conf: debug knob " + name + " must start with NODEX_DEBUG_")
	}
	v := getenv(name)
	knobsMu.Lock()
	knobs[name] = v
	knobsMu.Unlock()

	return v
}

// Knobs returns the registered debug knobs that are set, sorted by name, as
// "NAME=value" strings for the start-up log.
func Knobs() []string {
	knobsMu.Lock()
	defer knobsMu.Unlock()
	var set []string
	for k, v := range knobs {
		if v != "" {
			set = append(set, k+"="+v)
		}
	}
	sort.Strings(set)

	return set
}
