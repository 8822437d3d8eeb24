package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"sort"

	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// environmentJSON is the environment shape of the contract. env_vars is
// deliberately absent: it is never in any response.
type environmentJSON struct {
	ID          string              `json:"id"`
	Type        string              `json:"type"`
	Name        string              `json:"name"`
	Packages    map[string][]string `json:"packages"`
	SetupScript *string             `json:"setup_script"`
	Networking  json.RawMessage     `json:"networking"`
	Version     int                 `json:"version"`
	ArchivedAt  *string             `json:"archived_at"`
	CreatedAt   string              `json:"created_at"`
	UpdatedAt   string              `json:"updated_at"`
}

type environmentVersionJSON struct {
	ID          string              `json:"id"`
	Type        string              `json:"type"`
	Name        string              `json:"name"`
	Packages    map[string][]string `json:"packages"`
	SetupScript *string             `json:"setup_script"`
	Networking  json.RawMessage     `json:"networking"`
	Version     int                 `json:"version"`
	CreatedAt   string              `json:"created_at"`
}

// networkingOut renders {"type": ..., <other keys>}: type first, and the
// other keys only for limited policies.
func networkingOut(n store.Networking) json.RawMessage {
	head := canonicalJSON(map[string]string{"type": n.Type})
	cfg := bytes.TrimSpace(n.Config)
	if n.Type != "limited" || len(cfg) <= 2 {
		return head
	}
	out := append(head[:len(head)-1:len(head)-1], ',')
	return append(out, cfg[1:]...)
}

func environmentOut(e *store.Environment) environmentJSON {
	return environmentJSON{
		ID: e.ID, Type: "environment", Name: e.Name, Packages: e.Packages, SetupScript: nullIfEmpty(e.SetupScript),
		Networking: networkingOut(e.Networking), Version: e.Version, ArchivedAt: timePtr(e.ArchivedAt),
		CreatedAt: store.FormatTime(e.CreatedAt), UpdatedAt: store.FormatTime(e.UpdatedAt),
	}
}

func environmentVersionOut(v *store.EnvironmentVersion) environmentVersionJSON {
	return environmentVersionJSON{
		ID: v.ID, Type: "environment", Name: v.Name, Packages: v.Packages, SetupScript: nullIfEmpty(v.SetupScript),
		Networking: networkingOut(v.Networking), Version: v.Version, CreatedAt: store.FormatTime(v.CreatedAt),
	}
}

// PackageManagers are the managers an environment may list packages for,
// in the order provisioning installs them.
var PackageManagers = []string{"apt", "cargo", "gem", "go", "npm", "pip"}

var envVarNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

type environmentFields struct {
	name        *string
	packages    map[string][]string
	envVars     map[string]string
	setupScript *string
	networking  *store.Networking
}

func decodeEnvironmentFields(o *object, create bool) environmentFields {
	var f environmentFields
	if create {
		name := o.str("name", maxNameLen)
		f.name = &name
	} else {
		f.name = o.optStr("name", maxNameLen)
	}
	f.packages = decodePackages(o)
	f.envVars = decodeEnvVars(o, "env_vars")
	f.setupScript = o.optStr("setup_script", 0)
	f.networking = decodeNetworking(o)
	return f
}

func decodePackages(o *object) map[string][]string {
	d, ok := o.dict("packages")
	if !ok {
		return nil
	}
	out := map[string][]string{}
	managers := make([]string, 0, len(d))
	for m := range d {
		managers = append(managers, m)
	}
	sort.Strings(managers)
	valid := true
	for _, m := range managers {
		if !slices.Contains(PackageManagers, m) {
			o.valueError([]any{"packages"}, d, "Unknown package manager: %s. Must be one of: %s", m, pyStrList(PackageManagers))
			valid = false
			continue
		}
		list, ok := d[m].([]any)
		if !ok {
			o.add("list_type", []any{"packages", m}, "Input should be a valid list", d[m])
			valid = false
			continue
		}
		pkgs := make([]string, 0, len(list))
		for i, p := range list {
			s, ok := p.(string)
			if !ok {
				o.add("string_type", []any{"packages", m, i}, "Input should be a valid string", p)
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
func decodeEnvVars(o *object, key string) map[string]string {
	vars := o.stringMap(key)
	if vars == nil {
		return nil
	}
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !envVarNameRE.MatchString(k) {
			// The input is the name only: values are secrets and are never echoed.
			o.valueError([]any{key}, k, "Invalid env_var key %s: must match [A-Za-z_][A-Za-z0-9_]*", store.PyRepr(k))
			return nil
		}
	}
	return vars
}

func decodeNetworking(o *object) *store.Networking {
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

func (s *Server) handleEnvironmentCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	f := decodeEnvironmentFields(o, true)
	if err := o.err(); err != nil {
		return err
	}
	in := store.EnvironmentInput{Name: *f.name, Packages: f.packages, EnvVars: f.envVars, SetupScript: deref(f.setupScript),
		Networking: store.Networking{Type: "unrestricted", Config: json.RawMessage("{}")}}
	if f.networking != nil {
		in.Networking = *f.networking
	}
	e, err := s.db.CreateEnvironment(r.Context(), u.ID, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, environmentOut(e))
	return nil
}

func (s *Server) handleEnvironmentList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	envs, err := s.db.ListEnvironments(r.Context(), u.ID, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(envs, environmentOut))
	return nil
}

func (s *Server) handleEnvironmentGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Environment not found")
	if err != nil {
		return err
	}
	e, err := s.db.GetEnvironment(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, environmentOut(e))
	return nil
}

func (s *Server) handleEnvironmentUpdate(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Environment not found")
	if err != nil {
		return err
	}
	// The original answers 404 and "archived" before it parses the body.
	if err := s.db.CheckEnvironmentUpdatable(r.Context(), u.ID, id); err != nil {
		return err
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	version, _ := o.integer("version", true, 0, 1<<31)
	f := decodeEnvironmentFields(o, false)
	if err := o.err(); err != nil {
		return err
	}
	e, err := s.db.UpdateEnvironment(r.Context(), u.ID, id, store.EnvironmentPatch{
		Version: int(version), Name: f.name, Packages: f.packages, EnvVars: f.envVars,
		SetupScript: f.setupScript, Networking: f.networking,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, environmentOut(e))
	return nil
}

func (s *Server) handleEnvironmentArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Environment not found")
	if err != nil {
		return err
	}
	e, err := s.db.ArchiveEnvironment(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, environmentOut(e))
	return nil
}

func (s *Server) handleEnvironmentDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Environment not found")
	if err != nil {
		return err
	}
	if err := s.db.DeleteEnvironment(r.Context(), u.ID, id); err != nil {
		return err
	}
	writeDetail(w, http.StatusOK, "Environment deleted")
	return nil
}

func (s *Server) handleEnvironmentVersions(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Environment not found")
	if err != nil {
		return err
	}
	versions, err := s.db.EnvironmentVersions(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(versions, environmentVersionOut))
	return nil
}
