package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// packageManagers are the managers an environment may list, as the API
// accepts them.
var packageManagers = []string{"apt", "cargo", "gem", "go", "npm", "pip"}

var envVarNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

type environmentsPage struct {
	Environments []*store.Environment
}

func (u *UI) handleEnvironments(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	envs, err := u.db.ListEnvironments(r.Context(), s.User.ID, true)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "environments", s, environmentsPage{Environments: envs})
	return nil
}

type environmentPage struct {
	Env          *store.Environment
	AllowedHosts []string
	Managers     []packageRow
	EnvVarNames  []string
}

type packageRow struct {
	Manager  string
	Packages string
}

// handleEnvironment is both /ui/environments/new and an environment's page.
func (u *UI) handleEnvironment(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	if ps.ByName("id") == "new" {
		return u.handleEnvironmentNew(w, r, s)
	}
	id, err := pathID(ps, "Environment")
	if err != nil {
		return err
	}
	e, err := u.db.GetEnvironment(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	// Only the names are shown; the values stay secret.
	vars, err := u.db.EnvironmentSecrets(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p := environmentPage{Env: e, EnvVarNames: store.SortedKeys(vars)}
	if e.Networking.Type == "limited" {
		var cfg struct {
			AllowedHosts []string `json:"allowed_hosts"`
		}
		json.Unmarshal(e.Networking.Config, &cfg)
		p.AllowedHosts = cfg.AllowedHosts
	}
	for _, m := range packageManagers {
		if pkgs, ok := e.Packages[m]; ok {
			p.Managers = append(p.Managers, packageRow{Manager: m, Packages: strings.Join(pkgs, ", ")})
		}
	}
	u.render(w, r, http.StatusOK, "environment_detail", s, p)
	return nil
}

type environmentNewPage struct {
	Form *form
}

func (u *UI) handleEnvironmentNew(w http.ResponseWriter, r *http.Request, s *session) error {
	p := environmentNewPage{Form: newForm()}
	if r.Method == http.MethodGet {
		p.Form.Values["networking_type"] = "unrestricted"
		u.render(w, r, http.StatusOK, "environment_new", s, p)
		return nil
	}
	f := p.Form
	in, ok := environmentInput(r, f)
	if ok {
		e, err := u.db.CreateEnvironment(r.Context(), s.User.ID, in)
		if store.ErrorCode(err) == store.Conflict {
			f.add("name", fmt.Sprintf("An active environment named %s exists.", store.PyRepr(in.Name)))
		} else if err != nil {
			return err
		} else {
			u.redirect(w, r, "/ui/environments/"+e.ID, success("Environment created."))
			return nil
		}
	}
	u.render(w, r, http.StatusOK, "environment_new", s, p)
	return nil
}

// environmentInput validates the create form with the API's rules.
func environmentInput(r *http.Request, f *form) (store.EnvironmentInput, bool) {
	var in store.EnvironmentInput
	in.Name = f.require(r, "name")
	if n := utf8.RuneCountInString(in.Name); n > maxNameLen {
		f.add("name", fmt.Sprintf("Ensure this value has at most %d characters (it has %d).", maxNameLen, n))
	}
	netType := strings.TrimSpace(r.PostForm.Get("networking_type"))
	if netType == "" {
		netType = "unrestricted"
	}
	f.Values["networking_type"] = netType
	for _, k := range []string{"packages_json", "env_vars_json", "setup_script", "allowed_hosts"} {
		f.Values[k] = r.PostForm.Get(k)
	}
	in.SetupScript = strings.ReplaceAll(f.Values["setup_script"], "\r\n", "\n")
	if strings.TrimSpace(in.SetupScript) == "" {
		in.SetupScript = ""
	}

	if obj, ok := jsonObject(f, "packages_json"); ok {
		in.Packages = map[string][]string{}
		managers := make([]string, 0, len(obj))
		for m := range obj {
			managers = append(managers, m)
		}
		sort.Strings(managers)
		for _, m := range managers {
			if !slices.Contains(packageManagers, m) {
				f.add("packages_json", fmt.Sprintf("Unknown package manager: %s. Must be one of: %s", m, pyList(packageManagers)))
				continue
			}
			pkgs, ok := stringList(obj[m])
			if !ok {
				f.add("packages_json", "Package values must be lists of strings.")
				continue
			}
			in.Packages[m] = pkgs
		}
	}
	if obj, ok := jsonObject(f, "env_vars_json"); ok {
		in.EnvVars = map[string]string{}
		for _, k := range sortedKeys(obj) {
			var v any
			json.Unmarshal(obj[k], &v)
			str, isStr := v.(string)
			if !isStr {
				f.add("env_vars_json", fmt.Sprintf("Environment variable %s must be a string.", store.PyRepr(k)))
				continue
			}
			if !envVarNameRE.MatchString(k) {
				f.add("env_vars_json", fmt.Sprintf("Invalid env_var key %s: must match [A-Za-z_][A-Za-z0-9_]*", store.PyRepr(k)))
				continue
			}
			in.EnvVars[k] = str
		}
	}

	switch netType {
	case "unrestricted":
		in.Networking = store.Networking{Type: "unrestricted", Config: json.RawMessage("{}")}
	case "limited":
		var hosts []string
		for _, line := range strings.Split(f.Values["allowed_hosts"], "\n") {
			if h := strings.TrimSpace(line); h != "" {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) == 0 {
			f.add("allowed_hosts", "Limited networking needs at least one allowed host.")
		}
		cfg, _ := json.Marshal(map[string][]string{"allowed_hosts": hosts})
		in.Networking = store.Networking{Type: "limited", Config: cfg}
	default:
		f.add("networking_type", fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", netType))
	}
	return in, f.ok()
}

// jsonObject parses a JSON-object textarea; an empty one is an empty object.
func jsonObject(f *form, field string) (map[string]json.RawMessage, bool) {
	raw := strings.TrimSpace(f.Values[field])
	if raw == "" {
		return nil, false
	}
	var v any
	dec := json.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(&v); err != nil || dec.More() {
		f.add(field, "Enter valid JSON.")
		return nil, false
	}
	if _, isObj := v.(map[string]any); !isObj {
		f.add(field, "Enter a JSON object.")
		return nil, false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil {
		f.add(field, "Enter valid JSON.")
		return nil, false
	}
	return obj, true
}

// stringList reads a JSON list of strings (null items are not strings).
func stringList(raw json.RawMessage) ([]string, bool) {
	var items []any
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, false
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pyList renders ['a', 'b'] as the API's messages do.
func pyList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = store.PyRepr(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (u *UI) handleEnvironmentArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Environment")
	if err != nil {
		return err
	}
	_, err = u.db.ArchiveEnvironment(r.Context(), s.User.ID, id)
	if store.ErrorCode(err) == store.Conflict {
		u.redirect(w, r, "/ui/environments/"+id, warning("Environment is already archived."))
		return nil
	}
	if err != nil {
		return err
	}
	u.redirect(w, r, "/ui/environments/"+id, success("Environment archived."))
	return nil
}
