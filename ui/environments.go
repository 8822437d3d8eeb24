package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
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
	Versions     []versionRow     // newest first
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
	p.Managers = packageRows(e.Packages)
	versions, err := u.db.EnvironmentVersions(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p.Versions = environmentVersionRows(versions)
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
	Curl string // the form's request as a curl command, secrets as placeholders
}

func (u *UI) handleEnvironmentNew(w http.ResponseWriter, r *http.Request, s *session) error {
	p := environmentNewPage{Form: newForm()}
	if r.Method == http.MethodGet {
		p.Form.Values["networking_type"] = "unrestricted"
		p.Curl = u.environmentCreateCurl(r, map[string]any{"networking": networkingBody(p.Form, nil)})
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
	p.Curl = u.environmentCreateCurl(r, body)
	u.render(w, r, http.StatusOK, "environment_new", s, p)
	return nil
}

// environmentCreateCurl shows the create request: env var values as
// placeholders, a blank name as one.
func (u *UI) environmentCreateCurl(r *http.Request, body map[string]any) string {
	shown := withPlaceholders(body, func(name string) string { return "<value of " + name + ">" })
	if _, ok := shown["name"]; !ok {
		shown["name"] = "<name>"
	}
	return curlCommand(http.MethodPost, u.baseURL(r)+"/environments", shown)
}

// environmentFormFields are the fields of the environment forms.
var environmentFormFields = []string{"name", "networking_type", "packages_json", "env_vars_json", "setup_script",
	"allowed_hosts", "allow_package_managers"}

// environmentBody turns the create form into the object the API decodes:
// the JSON textareas parsed (a form-only problem), networking from its type
// and one host per line. Blank fields are left out, as absent keys.
func environmentBody(r *http.Request, f *form) map[string]any {
	body := map[string]any{}
	for _, k := range environmentFormFields {
		f.Values[k] = r.PostForm.Get(k)
	}
	f.Values["name"] = strings.TrimSpace(f.Values["name"])
	setIf(body, "name", f.Values["name"])
	if script := textarea(f.Values["setup_script"]); strings.TrimSpace(script) != "" {
		body["setup_script"] = script
	}
	if v, ok := jsonObject(f, "packages_json"); ok {
		body["packages"] = v
	}
	if v, ok := jsonObject(f, "env_vars_json"); ok {
		body["env_vars"] = v
	}
	body["networking"] = networkingBody(f, nil)
	return body
}

// networkingBody is the form's network policy: its type, one host per
// line and allow_package_managers when ticked (hosts and the tick count
// only for a limited policy). An edit passes the stored policy, whose
// other keys a limited policy keeps: the API keeps keys it does not know,
// and the form shows none of them.
func networkingBody(f *form, current *store.Networking) map[string]any {
	netType := strings.TrimSpace(f.Values["networking_type"])
	if netType == "" {
		netType = "unrestricted"
	}
	f.Values["networking_type"] = netType
	networking := map[string]any{"type": netType}
	if netType != "limited" {
		return networking
	}
	for k, v := range otherNetworking(current) {
		networking[k] = v
	}
	hosts := []any{}
	for _, line := range strings.Split(f.Values["allowed_hosts"], "\n") {
		if h := strings.TrimSpace(line); h != "" {
			hosts = append(hosts, h)
		}
	}
	networking["allowed_hosts"] = hosts
	if f.Values["allow_package_managers"] != "" {
		networking["allow_package_managers"] = true
	}
	return networking
}

// otherNetworking are the keys of a stored limited policy the form does
// not show, as the request body would hold them; a stored
// allow_package_managers that is not true is kept as it is too (only true
// means anything), so an untouched form changes nothing.
func otherNetworking(n *store.Networking) map[string]any {
	if n == nil || n.Type != "limited" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(n.Config))
	dec.UseNumber()
	var cfg map[string]any
	if dec.Decode(&cfg) != nil {
		return nil
	}
	delete(cfg, "allowed_hosts")
	if cfg["allow_package_managers"] == true {
		delete(cfg, "allow_package_managers")
	}
	return cfg
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

// environmentEditPage is the data of environment_edit.html.
type environmentEditPage struct {
	Env             *store.Environment // as stored now
	Form            *form
	EnvVars         []envVarRow // the stored names
	OtherNetworking []string    // policy keys the form keeps as they are
	// Conflict is the environment's version when the form's was stale (0:
	// no conflict): the form was not saved.
	Conflict int
	Curl     string
}

// envVarRow is one stored env var on the edit form: its name, whether it
// is ticked for removal, and its problems. Its value is never on the page.
type envVarRow struct {
	Name   string
	Remove bool
	Errors []string
}

// handleEnvironmentEdit is /ui/environments/:id/edit: the current
// version's fields in a form that updates the environment as
// PUT /environments/{id} does. Env var values are secrets: the form lists
// the names; a value typed for one replaces it, a ticked box removes it,
// and the JSON field adds more.
func (u *UI) handleEnvironmentEdit(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Environment")
	if err != nil {
		return err
	}
	e, err := u.db.GetEnvironment(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	secrets, err := u.db.EnvironmentSecrets(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p := environmentEditPage{Env: e, Form: newForm()}
	for k := range otherNetworking(&e.Networking) {
		p.OtherNetworking = append(p.OtherNetworking, k)
	}
	slices.Sort(p.OtherNetworking)
	f := p.Form
	post := r.PostForm
	if r.Method == http.MethodGet {
		f.Values = environmentFormValues(e)
		post = nil
	} else {
		for _, k := range append(environmentFormFields, "version") {
			f.Values[k] = post.Get(k)
		}
	}
	body, shown := environmentPatchBody(f, post, e, secrets, &p.EnvVars)
	if r.Method == http.MethodGet {
		p.Curl = curlCommand(http.MethodPut, u.baseURL(r)+"/environments/"+id, shown)
		u.render(w, r, http.StatusOK, "environment_edit", s, p)
		return nil
	}
	if normText(f.Values["name"]) == "" {
		f.add("name", fieldRequired)
	}
	formOK := f.ok()
	patch, err := validate.EnvironmentPatch(validate.FromMap(body))
	if err == nil && formOK {
		var updated *store.Environment
		if updated, err = u.db.UpdateEnvironment(r.Context(), s.User.ID, id, patch); err == nil {
			msg := success(fmt.Sprintf("Environment updated: now version %d.", updated.Version))
			if updated.Version == e.Version {
				msg = warning(fmt.Sprintf("Nothing changed: the environment is still version %d.", e.Version))
			}
			u.redirect(w, r, "/ui/environments/"+id, msg)
			return nil
		}
	}
	status := http.StatusOK
	switch {
	case err == nil: // only the form's own checks failed
	case isVersionMismatch(err):
		cur, err := u.db.GetEnvironment(r.Context(), s.User.ID, id)
		if err != nil {
			return err
		}
		p.Env, p.Conflict, status = cur, cur.Version, http.StatusConflict
	case store.ErrorMessage(err) == "Cannot update an archived environment":
		cur, gerr := u.db.GetEnvironment(r.Context(), s.User.ID, id)
		if gerr != nil {
			return gerr
		}
		p.Env, status = cur, http.StatusConflict
		f.add("", store.ErrorMessage(err))
	default:
		if err := f.applyError(err, "name"); err != nil { // a refused update is the name's (taken)
			return err
		}
		versionErrors(f)
	}
	// Typed secrets are never sent back, not even to the browser that
	// typed them: the person enters them again.
	typed := f.Values["env_vars_json"] != ""
	for _, row := range p.EnvVars {
		typed = typed || post.Get("env_value_"+row.Name) != ""
	}
	f.Values["env_vars_json"] = ""
	if typed {
		f.add("env_vars", "Enter the new values again: values typed here are never shown back.")
	}
	p.Curl = curlCommand(http.MethodPut, u.baseURL(r)+"/environments/"+id, shown)
	u.render(w, r, status, "environment_edit", s, p)
	return nil
}

// environmentFormValues are the edit form's fields for a stored environment.
func environmentFormValues(e *store.Environment) map[string]string {
	v := map[string]string{"name": e.Name, "networking_type": e.Networking.Type, "setup_script": e.SetupScript,
		"allowed_hosts": strings.Join(e.Networking.AllowedHosts(), "\n"), "version": strconv.Itoa(e.Version)}
	if len(e.Packages) > 0 {
		b, _ := json.Marshal(e.Packages)
		v["packages_json"] = string(b)
	}
	if e.Networking.AllowPackageManagers() {
		v["allow_package_managers"] = "on"
	}
	return v
}

// environmentPatchBody is the edit form as the object PUT
// /environments/{id} takes, and a copy to show with placeholders for the
// env var values. Every field is sent (a blank packages field clears the
// packages) except a blank name, which the form requires. The API's
// env_vars replaces the whole map, so env_vars is sent only when the form
// changes a variable, and then with every name: the kept ones with their
// stored values. post holds the per-name fields (nil: none); rows gets a
// line per stored name.
func environmentPatchBody(f *form, post url.Values, e *store.Environment, secrets map[string]string, rows *[]envVarRow) (body, shown map[string]any) {
	body = map[string]any{"version": versionField(f.Values["version"])}
	if name := f.Values["name"]; normText(name) != "" {
		body["name"] = keepText(name, e.Name, true)
	}
	body["setup_script"] = keepText(f.Values["setup_script"], e.SetupScript, false)
	body["packages"] = map[string]any{}
	if normText(f.Values["packages_json"]) != "" {
		if v, ok := jsonObject(f, "packages_json"); ok {
			body["packages"] = v
		} else {
			delete(body, "packages")
		}
	}
	body["networking"] = networkingBody(f, &e.Networking)

	vars, placeholders := map[string]any{}, map[string]any{}
	changed := false
	for _, name := range store.SortedKeys(secrets) {
		row := envVarRow{Name: name, Remove: slices.Contains(post["env_remove"], name)}
		value := post.Get("env_value_" + name)
		if strings.TrimSpace(value) == "" {
			value = "" // empty keeps the stored value
		}
		switch {
		case row.Remove && value != "":
			row.Errors = append(row.Errors, "Give "+name+" a new value or remove it, not both.")
			f.add("env_value_"+name, row.Errors[0])
		case row.Remove:
			changed = true
		case value != "":
			vars[name], placeholders[name] = value, "<new value of "+name+">"
			changed = true
		default:
			vars[name], placeholders[name] = secrets[name], "<current value of "+name+">"
		}
		*rows = append(*rows, row)
	}
	if added, ok := jsonObject(f, "env_vars_json"); ok {
		for name, value := range added {
			vars[name], placeholders[name] = value, "<new value of "+name+">"
		}
		changed = true
	}
	shown = make(map[string]any, len(body)+1)
	for k, v := range body {
		shown[k] = v
	}
	if changed {
		body["env_vars"], shown["env_vars"] = vars, placeholders
	}
	return body, shown
}

func (u *UI) handleEnvironmentVersions(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Environment")
	if err != nil {
		return err
	}
	e, err := u.db.GetEnvironment(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	versions, err := u.db.EnvironmentVersions(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p := versionsPage{Kind: "Environment", Base: "/ui/environments/" + id, Name: e.Name, Current: e.Version, Archived: e.ArchivedAt != nil}
	p.Versions = environmentVersionRows(versions)
	u.render(w, r, http.StatusOK, "versions", s, p)
	return nil
}

func environmentVersionRows(versions []*store.EnvironmentVersion) []versionRow {
	var rows []versionRow
	for _, v := range versions {
		rows = append(rows, versionRow{Version: v.Version, Name: v.Name, CreatedAt: v.CreatedAt})
	}
	return rows
}

// environmentVersionPage is the data of environment_version.html.
type environmentVersionPage struct {
	Env          *store.Environment // as it is now
	Version      *store.EnvironmentVersion
	Managers     []packageRow
	AllowedHosts []string
	Other        []metaRow // the policy's other keys, as JSON
}

func (u *UI) handleEnvironmentVersion(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Environment")
	if err != nil {
		return err
	}
	n, err := versionNumber(ps, "Environment")
	if err != nil {
		return err
	}
	e, err := u.db.GetEnvironment(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	versions, err := u.db.EnvironmentVersions(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(versions, func(v *store.EnvironmentVersion) bool { return v.Version == n })
	if i < 0 {
		return store.Errorf(store.NotFound, "Environment version not found")
	}
	v := versions[i]
	p := environmentVersionPage{Env: e, Version: v, Managers: packageRows(v.Packages)}
	if v.Networking.Type == "limited" {
		p.AllowedHosts = v.Networking.AllowedHosts()
		var cfg map[string]json.RawMessage
		json.Unmarshal(v.Networking.Config, &cfg)
		for _, k := range store.SortedKeys(cfg) {
			if k != "allowed_hosts" {
				p.Other = append(p.Other, metaRow{k, string(cfg[k])})
			}
		}
	}
	u.render(w, r, http.StatusOK, "environment_version", s, p)
	return nil
}

// packageRows lists packages by manager, in install order.
func packageRows(pkgs map[string][]string) []packageRow {
	var rows []packageRow
	for _, m := range store.PackageManagers {
		if list, ok := pkgs[m]; ok {
			rows = append(rows, packageRow{Manager: m, Packages: strings.Join(list, ", ")})
		}
	}
	return rows
}
