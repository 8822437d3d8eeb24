package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/aod/aod/validate"
)

// passEnv is what aod serve --pass-env hands to every session: variables
// of the server's own environment, for a single-user machine where the
// model key is already exported in the shell that starts aod.
type passEnv struct {
	vars  map[string]string // the named variables that are set, name -> value
	unset []string          // named but not set: nothing is passed for them
}

// resolvePassEnv reads the named variables (flags may hold several,
// comma-separated, as AOD_PASS_ENV does) with getenv. A name that is not an
// env var name, or is one of aod's own (AOD_*, such as the encryption
// key), is an error: the server does not start.
func resolvePassEnv(names []string, getenv func(string) string) (passEnv, error) {
	p := passEnv{vars: map[string]string{}}
	for _, s := range names {
		for _, name := range strings.Split(s, ",") {
			if name = strings.TrimSpace(name); name == "" {
				continue
			}
			if !validate.EnvVarName(name) {
				return passEnv{}, fmt.Errorf("--pass-env %q: not an env var name ([A-Za-z_][A-Za-z0-9_]*)", name)
			}
			if strings.HasPrefix(name, "AOD_") {
				return passEnv{}, fmt.Errorf("--pass-env %s: aod's own variables are never passed to sessions", name)
			}
			if v := getenv(name); v != "" {
				p.vars[name] = v
			} else if !slices.Contains(p.unset, name) {
				p.unset = append(p.unset, name)
			}
		}
	}
	return p, nil
}

// log says at start-up which names are passed (never their values) and
// that every user's sessions get them.
func (p passEnv) log(logger *slog.Logger) {
	if len(p.vars) > 0 {
		names := make([]string, 0, len(p.vars))
		for k := range p.vars {
			names = append(names, k)
		}
		slices.Sort(names)
		logger.Warn("--pass-env: these host variables go to every session of every user of this server (below their own secrets and env vars); use it only on a single-user machine",
			"names", strings.Join(names, ","))
	}
	if len(p.unset) > 0 {
		logger.Warn("--pass-env: not set in aod's environment, so not passed", "names", strings.Join(p.unset, ","))
	}
}
