package validate

import (
	"encoding/json"
	"regexp"
	"slices"

	"github.com/aod/aod/store"
)

// envVarName is the form of an env var name, for environments' env_vars and
// sessions' secret_env_vars.
var envVarName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

type environmentFields struct {
	name        *string
	packages    map[string][]string
	envVars     map[string]string
	setupScript *string
	networking  *store.Networking
}

func decodeEnvironmentFields(o *Object, create bool) environmentFields {
	var f environmentFields
	if create {
		name := o.str("name", MaxNameLen)
		f.name = &name
	} else {
		f.name = o.optStr("name", MaxNameLen)
	}
	f.packages = decodePackages(o)
	f.envVars = decodeEnvVars(o, "env_vars")
	f.setupScript = o.optStr("setup_script", 0)
	f.networking = decodeNetworking(o)
	return f
}

func decodePackages(o *Object) map[string][]string {
	d, ok := o.dict("packages")
	if !ok {
		return nil
	}
	out := map[string][]string{}
	managers := store.SortedKeys(d)
	valid := true
	for _, m := range managers {
		if !slices.Contains(store.PackageManagers, m) {
			// The input is the offending key alone: echoing the whole object
			// per unknown key made error bodies quadratic in the request.
			o.valueError([]any{"packages"}, m, "Unknown package manager: %s. Must be one of: %s", m, store.PyList(store.PackageManagers))
			valid = false
			continue
		}
		list, ok := d[m].([]any)
		if !ok {
			o.add("list_type", []any{"packages", m}, "Input should be a valid list", d[m], nil)
			valid = false
			continue
		}
		pkgs := make([]string, 0, len(list))
		for i, p := range list {
			s, ok := p.(string)
			if !ok {
				o.add("string_type", []any{"packages", m, i}, "Input should be a valid string", p, nil)
				valid = false
				continue
			}
			pkgs = append(pkgs, s)
		}
		out[m] = pkgs
	}
	if !valid {
		return nil
	}
	return out
}

// decodeEnvVars reads a {NAME: value} map of secret variables.
func decodeEnvVars(o *Object, key string) map[string]string {
	vars := o.stringMap(key)
	if vars == nil {
		return nil
	}
	names := store.SortedKeys(vars)
	for _, k := range names {
		if !envVarName.MatchString(k) {
			// The input is the name only: values are secrets and are never echoed.
			o.valueError([]any{key}, k, "Invalid env_var key %s: must match [A-Za-z_][A-Za-z0-9_]*", store.PyRepr(k))
			return nil
		}
	}
	return vars
}

func decodeNetworking(o *Object) *store.Networking {
	d, ok := o.dict("networking")
	if !ok {
		return nil
	}
	loc := []any{"networking"}
	n := store.Networking{Type: "unrestricted"}
	if t, present := d["type"]; present {
		s, ok := t.(string)
		if !ok || (s != "unrestricted" && s != "limited") {
			o.valueError(loc, d, "networking.type must be 'unrestricted' or 'limited'")
			return nil
		}
		n.Type = s
	}
	if hosts, present := d["allowed_hosts"]; present {
		l, ok := hosts.([]any)
		if !ok {
			o.valueError(loc, d, "networking.allowed_hosts must be a list")
			return nil
		}
		for _, h := range l {
			if s, ok := h.(string); !ok || s == "" {
				o.valueError(loc, d, "networking.allowed_hosts must be a list of host names")
				return nil
			}
		}
	}
	if n.Type == "unrestricted" {
		n.Config = json.RawMessage("{}")
		return &n
	}
	if l, _ := d["allowed_hosts"].([]any); len(l) == 0 {
		// A limited policy with no hosts would deny everything, and the SDKs
		// reject such an environment when they read it back.
		o.valueError(loc, d, "networking.allowed_hosts must list at least one host when type is 'limited'")
		return nil
	}
	cfg := make(map[string]any, len(d))
	for k, v := range d {
		if k != "type" {
			cfg[k] = v
		}
	}
	n.Config = canonicalJSON(cfg)
	return &n
}

// EnvironmentInput validates an environment create.
func EnvironmentInput(o *Object) (store.EnvironmentInput, error) {
	f := decodeEnvironmentFields(o, true)
	if err := o.Err(); err != nil {
		return store.EnvironmentInput{}, err
	}
	in := store.EnvironmentInput{Name: *f.name, Packages: f.packages, EnvVars: f.envVars, SetupScript: deref(f.setupScript),
		Networking: store.Networking{Type: "unrestricted", Config: json.RawMessage("{}")}}
	if f.networking != nil {
		in.Networking = *f.networking
	}
	return in, nil
}

// EnvironmentPatch validates an environment update.
func EnvironmentPatch(o *Object) (store.EnvironmentPatch, error) {
	version, _ := o.integer("version", true, 0, 1<<31)
	f := decodeEnvironmentFields(o, false)
	if err := o.Err(); err != nil {
		return store.EnvironmentPatch{}, err
	}
	return store.EnvironmentPatch{
		Version: int(version), Name: f.name, Packages: f.packages, EnvVars: f.envVars,
		SetupScript: f.setupScript, Networking: f.networking,
	}, nil
}
