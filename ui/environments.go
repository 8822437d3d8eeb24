package ui

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/aod/aod/sessions"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

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
	Layers       []sessions.Layer // newest version first
	LayersKept   bool             // this server keeps package layers
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
	for _, m := range store.PackageManagers {
		if pkgs, ok := e.Packages[m]; ok {
			p.Managers = append(p.Managers, packageRow{Manager: m, Packages: strings.Join(pkgs, ", ")})
		}
	}
	if len(p.Managers) > 0 {
		p.Layers, p.LayersKept, err = u.sess.EnvironmentLayers(r.Context(), s.User.ID, id)
		if err != nil {
			u.log.Error("listing an environment's package layers", "environment", id, "err", err)
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
	body := environmentBody(r, f)
	formOK := f.ok() // the JSON textareas parsed
	in, err := validate.EnvironmentInput(validate.FromMap(body))
	if err == nil && formOK {
		var e *store.Environment
		if e, err = u.db.CreateEnvironment(r.Context(), s.User.ID, in); err == nil {
			u.redirect(w, r, "/ui/environments/"+e.ID, success("Environment created."))
			return nil
		}
	}
	if err != nil {
		if err := f.applyError(err, "name"); err != nil { // a refused create is the name's (taken)
			return err
		}
	}
	// The secret values are never sent back, not even to the browser that
	// typed them: the person re-enters them.
	if f.Values["env_vars_json"] != "" {
		f.Values["env_vars_json"] = ""
		f.add("env_vars_json", "Enter the environment variables again: their values are never shown back.")
	}
	u.render(w, r, http.StatusOK, "environment_new", s, p)
	return nil
}

// environmentBody turns the create form into the object the API decodes:
// the JSON textareas parsed (a form-only problem), networking from its type
// and one host per line. Blank fields are left out, as absent keys.
func environmentBody(r *http.Request, f *form) map[string]any {
	body := map[string]any{}
	for _, k := range []string{"name", "networking_type", "packages_json", "env_vars_json", "setup_script", "allowed_hosts"} {
		f.Values[k] = r.PostForm.Get(k)
	}
	f.Values["name"] = strings.TrimSpace(f.Values["name"])
	setIf(body, "name", f.Values["name"])
	if script := strings.ReplaceAll(f.Values["setup_script"], "\r\n", "\n"); strings.TrimSpace(script) != "" {
		body["setup_script"] = script
	}
	if v, ok := jsonObject(f, "packages_json"); ok {
		body["packages"] = v
	}
	if v, ok := jsonObject(f, "env_vars_json"); ok {
		body["env_vars"] = v
	}
	netType := strings.TrimSpace(f.Values["networking_type"])
	if netType == "" {
		netType = "unrestricted"
	}
	f.Values["networking_type"] = netType
	networking := map[string]any{"type": netType}
	if netType == "limited" {
		hosts := []any{}
		for _, line := range strings.Split(f.Values["allowed_hosts"], "\n") {
			if h := strings.TrimSpace(line); h != "" {
				hosts = append(hosts, h)
			}
		}
		networking["allowed_hosts"] = hosts
	}
	body["networking"] = networking
	return body
}

// jsonObject parses a JSON-object textarea into what a request body would
// hold there; an empty one is absent.
func jsonObject(f *form, field string) (map[string]any, bool) {
	raw := strings.TrimSpace(f.Values[field])
	if raw == "" {
		return nil, false
	}
	o, err := validate.Parse([]byte(raw))
	if err != nil {
		if strings.HasPrefix(raw, "{") || !json.Valid([]byte(raw)) {
			f.add(field, "Enter valid JSON.")
		} else {
			f.add(field, "Enter a JSON object.")
		}
		return nil, false
	}
	return o.Map(), true
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
