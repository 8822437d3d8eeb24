package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

type agentsPage struct {
	Agents []*store.Agent
}

func (u *UI) handleAgents(w http.ResponseWriter, r *http.Request, _ httprouter.Params, s *session) error {
	agents, err := u.db.ListAgents(r.Context(), s.User.ID, true)
	if err != nil {
		return err
	}
	u.render(w, r, http.StatusOK, "agents", s, agentsPage{Agents: agents})
	return nil
}

// pathID returns the canonical id in the URL; anything else is the 404 of
// the resource (never a 500).
func pathID(ps httprouter.Params, what string) (string, error) {
	return validate.ID(ps.ByName("id"), what)
}

// handleAgent is both /ui/agents/new (GET and POST) and an agent's page.
func (u *UI) handleAgent(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	if ps.ByName("id") == "new" {
		return u.handleAgentNew(w, r, s)
	}
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	a, err := u.db.GetAgent(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	return u.renderAgent(w, r, s, a, nil)
}

// renderAgent renders an agent's page. start is its start-session form as
// submitted (nil: a fresh form), extra the page's messages about it.
func (u *UI) renderAgent(w http.ResponseWriter, r *http.Request, s *session, a *store.Agent, start *startForm, extra ...flash) error {
	p := agentPage{Agent: a}
	if a.EnvironmentID != "" {
		if e, err := u.db.GetEnvironment(r.Context(), s.User.ID, a.EnvironmentID); err == nil {
			p.Environment = e
		}
	}
	p.Skills = namesOf(a.Skills)
	p.MCPServers = mcpNames(a.MCPServers)
	if a.ArchivedAt == nil {
		if start == nil {
			start = newStartForm()
		}
		if err := u.prepareStartForm(r, s.User.ID, a.ID, start); err != nil {
			return err
		}
		p.Start = start
	}
	u.render(w, r, http.StatusOK, "agent_detail", s, p, extra...)
	return nil
}

type agentPage struct {
	Agent       *store.Agent
	Environment *store.Environment
	Skills      []string
	MCPServers  []string
	Start       *startForm // nil for an archived agent
}

// namesOf lists the names of a skills array (a GitHub skill without a
// name shows its source).
func namesOf(raw json.RawMessage) []string {
	var items []struct{ Name, Source string }
	json.Unmarshal(raw, &items)
	var out []string
	for _, it := range items {
		if it.Name != "" {
			out = append(out, it.Name)
		} else if it.Source != "" {
			out = append(out, it.Source)
		}
	}
	return out
}

type agentNewPage struct {
	Form         *form
	Runtimes     []string
	Models       []string
	Environments []*store.Environment
	Curl         string // the form's request as a curl command
}

// agentFormFields are the fields of the agent forms, create and edit.
var agentFormFields = []string{"name", "runtime", "model", "environment_id", "description", "system"}

func (u *UI) handleAgentNew(w http.ResponseWriter, r *http.Request, s *session) error {
	envs, err := u.db.ListEnvironments(r.Context(), s.User.ID, false)
	if err != nil {
		return err
	}
	p := agentNewPage{Form: newForm(), Runtimes: catalogue.RuntimeNames(), Models: catalogue.Models(), Environments: envs}
	if r.Method == http.MethodGet {
		p.Form.Values["runtime"] = "claude"
		p.Curl = u.agentCreateCurl(r, agentCreateBody(p.Form))
		u.render(w, r, http.StatusOK, "agent_new", s, p)
		return nil
	}
	f := p.Form
	for _, k := range agentFormFields {
		f.Values[k] = normText(r.PostForm.Get(k))
	}
	body := agentCreateBody(f)
	in, err := validate.AgentInput(validate.FromMap(body))
	if err == nil {
		var a *store.Agent
		if a, err = u.db.CreateAgent(r.Context(), s.User.ID, in); err == nil {
			u.redirect(w, r, "/ui/agents/"+a.ID, success("Agent created."))
			return nil
		}
	}
	if err := f.applyError(err, agentErrorField(err)); err != nil {
		return err
	}
	p.Curl = u.agentCreateCurl(r, body)
	u.render(w, r, http.StatusOK, "agent_new", s, p)
	return nil
}

// agentCreateBody is the create form as the object POST /agents takes:
// blank fields are left out, as absent keys.
func agentCreateBody(f *form) map[string]any {
	body := map[string]any{}
	for _, k := range agentFormFields {
		setIf(body, k, f.Values[k])
	}
	return body
}

// agentCreateCurl shows the create request; a required field still blank
// appears as a placeholder naming it, so the command reads as a template.
func (u *UI) agentCreateCurl(r *http.Request, body map[string]any) string {
	shown := withPlaceholders(body, nil)
	for _, k := range []string{"name", "model"} {
		if _, ok := shown[k]; !ok {
			shown[k] = "<" + k + ">"
		}
	}
	return curlCommand(http.MethodPost, u.baseURL(r)+"/agents", shown)
}

// agentErrorField is the form field a non-field refusal of an agent is
// about: the catalogue's unknown runtime (a 400), the model's checks (422),
// and the environment's lookup and state (404, 409).
func agentErrorField(err error) string {
	switch store.ErrorCode(err) {
	case store.BadRequest:
		return "runtime"
	case store.Invalid:
		return "model"
	}
	return "environment_id"
}

func (u *UI) handleAgentArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	_, err = u.db.ArchiveAgent(r.Context(), s.User.ID, id)
	switch store.ErrorCode(err) {
	case store.Conflict:
		u.redirect(w, r, "/ui/agents/"+id, warning("Agent is already archived."))
		return nil
	case store.NotFound:
		return err
	}
	if err != nil {
		return err
	}
	u.redirect(w, r, "/ui/agents/"+id, success("Agent archived."))
	return nil
}

// promptFields validates the prompt and timeout of a start or follow-up
// form with the API's rules; a problem comes back as "<Field>: <message>"
// for a flash.
func promptFields(r *http.Request) (prompt string, timeout int, problem string) {
	body := map[string]any{}
	setIf(body, "timeout", r.PostForm.Get("timeout"))
	if p := textarea(r.PostForm.Get("prompt")); strings.TrimSpace(p) != "" {
		body["prompt"] = p
	}
	prompt, timeout, err := validate.Prompt(validate.FromMap(body))
	if err != nil {
		return "", 0, flashMessage(err)
	}
	return prompt, timeout, ""
}

func (u *UI) handleAgentStartSession(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	// Someone else's agent is a 404, whatever the form says.
	a, err := u.db.GetAgent(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	f := readStartForm(r.PostForm)
	sess, err := u.startSession(r.Context(), s.User.ID, id, f)
	if err == nil {
		u.redirect(w, r, "/ui/sessions/"+sess.ID, success("Session started."))
		return nil
	}
	if a.ArchivedAt != nil || store.ErrorCode(err) == store.Internal {
		// An archived agent's page has no form to show again.
		return u.refuse(w, r, "/ui/agents/"+id, err)
	}
	store.SetRetryAfter(w.Header(), err)
	return u.renderAgent(w, r, s, a, f, f.applyError(err)...)
}

// agentEditPage is the data of agent_edit.html.
type agentEditPage struct {
	Agent        *store.Agent // as stored now
	Form         *form
	Runtimes     []string
	Models       []string
	Environments []*store.Environment // the active ones, and the agent's own even when archived
	Skills       []string             // what the form leaves as it is
	MCPServers   []string
	Metadata     []string
	// Conflict is the agent's version when the form's was stale (0: no
	// conflict): the form was not saved.
	Conflict int
	Curl     string
}

// handleAgentEdit is /ui/agents/:id/edit: the current version's fields in
// a form that updates the agent as PUT /agents/{id} does, with the version
// it was read at.
func (u *UI) handleAgentEdit(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	a, err := u.db.GetAgent(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p := agentEditPage{Agent: a, Form: newForm(), Runtimes: catalogue.RuntimeNames(), Models: catalogue.Models(),
		Skills: namesOf(a.Skills), MCPServers: mcpNames(a.MCPServers), Metadata: store.SortedKeys(a.Metadata)}
	if p.Environments, err = u.db.ListEnvironments(r.Context(), s.User.ID, false); err != nil {
		return err
	}
	if a.EnvironmentID != "" && !slices.ContainsFunc(p.Environments, func(e *store.Environment) bool { return e.ID == a.EnvironmentID }) {
		if e, err := u.db.GetEnvironment(r.Context(), s.User.ID, a.EnvironmentID); err == nil {
			p.Environments = append(p.Environments, e)
		}
	}
	f := p.Form
	if r.Method == http.MethodGet {
		f.Values = map[string]string{"name": a.Name, "runtime": a.Runtime, "model": a.Model, "environment_id": a.EnvironmentID,
			"description": a.Description, "system": a.System, "version": strconv.Itoa(a.Version)}
		p.Curl = u.agentUpdateCurl(r, a.ID, agentPatchBody(f, a))
		u.render(w, r, http.StatusOK, "agent_edit", s, p)
		return nil
	}
	for _, k := range agentFormFields {
		f.Values[k] = normText(r.PostForm.Get(k))
	}
	f.Values["version"] = strings.TrimSpace(r.PostForm.Get("version"))
	body := agentPatchBody(f, a)
	if f.Values["name"] == "" {
		f.add("name", fieldRequired)
	}
	patch, err := validate.AgentPatch(validate.FromMap(body))
	if err == nil && f.ok() {
		var updated *store.Agent
		if updated, err = u.db.UpdateAgent(r.Context(), s.User.ID, id, patch); err == nil {
			msg := success(fmt.Sprintf("Agent updated: now version %d.", updated.Version))
			if updated.Version == a.Version {
				msg = warning(fmt.Sprintf("Nothing changed: the agent is still version %d.", a.Version))
			}
			u.redirect(w, r, "/ui/agents/"+id, msg)
			return nil
		}
	}
	status := http.StatusOK
	switch {
	case err == nil: // only the form's own checks failed
	case isVersionMismatch(err):
		cur, err := u.db.GetAgent(r.Context(), s.User.ID, id)
		if err != nil {
			return err
		}
		p.Agent, p.Conflict, status = cur, cur.Version, http.StatusConflict
	case store.ErrorMessage(err) == "Cannot update an archived agent":
		cur, gerr := u.db.GetAgent(r.Context(), s.User.ID, id)
		if gerr != nil {
			return gerr
		}
		p.Agent, status = cur, http.StatusConflict
		f.add("", store.ErrorMessage(err))
	default:
		if err := f.applyError(err, agentErrorField(err)); err != nil {
			return err
		}
		versionErrors(f)
	}
	p.Curl = u.agentUpdateCurl(r, a.ID, body)
	u.render(w, r, status, "agent_edit", s, p)
	return nil
}

// agentPatchBody is the edit form as the object PUT /agents/{id} takes.
// Every field is sent (a blank description or system prompt clears it),
// except a blank name, which the form requires as the create form does,
// and an unchanged environment: the API keeps it, and naming it again
// would be refused once it is archived.
func agentPatchBody(f *form, a *store.Agent) map[string]any {
	body := map[string]any{"version": versionField(f.Values["version"])}
	if name := f.Values["name"]; normText(name) != "" {
		body["name"] = keepText(name, a.Name, true)
	}
	body["runtime"] = keepText(f.Values["runtime"], a.Runtime, true)
	body["model"] = keepText(f.Values["model"], a.Model, true)
	body["description"] = keepText(f.Values["description"], a.Description, true)
	body["system"] = keepText(f.Values["system"], a.System, true)
	if env := normText(f.Values["environment_id"]); env != a.EnvironmentID {
		if env == "" {
			body["environment_id"] = nil // detaches it
		} else {
			body["environment_id"] = env
		}
	}
	return body
}

func (u *UI) agentUpdateCurl(r *http.Request, id string, body map[string]any) string {
	return curlCommand(http.MethodPut, u.baseURL(r)+"/agents/"+id, body)
}

// versionErrors moves the hidden version field's problems to the top of
// the form, where they are seen.
func versionErrors(f *form) {
	for _, msg := range f.Errors["version"] {
		f.add("", "Version: "+msg)
	}
	delete(f.Errors, "version")
}

// mcpNames lists an MCP servers array as "name (type)".
func mcpNames(raw json.RawMessage) []string {
	var mcp []struct{ Name, Type string }
	json.Unmarshal(raw, &mcp)
	var out []string
	for _, m := range mcp {
		out = append(out, fmt.Sprintf("%s (%s)", m.Name, m.Type))
	}
	return out
}

// versionRow is one line of a version history.
type versionRow struct {
	Version   int
	Name      string
	CreatedAt time.Time
}

// versionsPage is the data of versions.html, an agent's or an
// environment's history.
type versionsPage struct {
	Kind     string // "Agent" or "Environment"
	Base     string // the detail page's path
	Name     string
	Current  int
	Archived bool
	Versions []versionRow // newest first
}

func (u *UI) handleAgentVersions(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	a, err := u.db.GetAgent(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	versions, err := u.db.AgentVersions(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	p := versionsPage{Kind: "Agent", Base: "/ui/agents/" + id, Name: a.Name, Current: a.Version, Archived: a.ArchivedAt != nil}
	for _, v := range versions {
		p.Versions = append(p.Versions, versionRow{Version: v.Version, Name: v.Name, CreatedAt: v.CreatedAt})
	}
	u.render(w, r, http.StatusOK, "versions", s, p)
	return nil
}

// agentVersionPage is the data of agent_version.html.
type agentVersionPage struct {
	Agent       *store.Agent // as it is now
	Version     *store.AgentVersion
	Environment *store.Environment // the version's environment, when it still exists
	Skills      []string
	MCPServers  []string
	Metadata    []metaRow
}

type metaRow struct{ Key, Value string }

// versionNumber is the :n of a version page; anything but a positive
// number is the version's 404.
func versionNumber(ps httprouter.Params, what string) (int, error) {
	n, err := strconv.Atoi(ps.ByName("n"))
	if err != nil || n < 1 || strconv.Itoa(n) != ps.ByName("n") {
		return 0, store.Errorf(store.NotFound, "%s version not found", what)
	}
	return n, nil
}

func (u *UI) handleAgentVersion(w http.ResponseWriter, r *http.Request, ps httprouter.Params, s *session) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	n, err := versionNumber(ps, "Agent")
	if err != nil {
		return err
	}
	a, err := u.db.GetAgent(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	versions, err := u.db.AgentVersions(r.Context(), s.User.ID, id)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(versions, func(v *store.AgentVersion) bool { return v.Version == n })
	if i < 0 {
		return store.Errorf(store.NotFound, "Agent version not found")
	}
	v := versions[i]
	p := agentVersionPage{Agent: a, Version: v, Skills: namesOf(v.Skills), MCPServers: mcpNames(v.MCPServers)}
	if v.EnvironmentID != "" {
		if e, err := u.db.GetEnvironment(r.Context(), s.User.ID, v.EnvironmentID); err == nil {
			p.Environment = e
		}
	}
	for _, k := range store.SortedKeys(v.Metadata) {
		p.Metadata = append(p.Metadata, metaRow{k, v.Metadata[k]})
	}
	u.render(w, r, http.StatusOK, "agent_version", s, p)
	return nil
}
