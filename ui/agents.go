package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

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
	p := agentPage{Agent: a, Timeout: validate.DefaultTimeout}
	if a.EnvironmentID != "" {
		if e, err := u.db.GetEnvironment(r.Context(), s.User.ID, a.EnvironmentID); err == nil {
			p.Environment = e
		}
	}
	p.Skills = namesOf(a.Skills)
	var mcp []struct{ Name, Type string }
	json.Unmarshal(a.MCPServers, &mcp)
	for _, m := range mcp {
		p.MCPServers = append(p.MCPServers, fmt.Sprintf("%s (%s)", m.Name, m.Type))
	}
	u.render(w, r, http.StatusOK, "agent_detail", s, p)
	return nil
}

type agentPage struct {
	Agent       *store.Agent
	Environment *store.Environment
	Skills      []string
	MCPServers  []string
	Timeout     int
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
}

func (u *UI) handleAgentNew(w http.ResponseWriter, r *http.Request, s *session) error {
	envs, err := u.db.ListEnvironments(r.Context(), s.User.ID, false)
	if err != nil {
		return err
	}
	p := agentNewPage{Form: newForm(), Runtimes: catalogue.RuntimeNames(), Models: catalogue.Models(), Environments: envs}
	if r.Method == http.MethodGet {
		p.Form.Values["runtime"] = "claude"
		u.render(w, r, http.StatusOK, "agent_new", s, p)
		return nil
	}
	f := p.Form
	for _, k := range []string{"name", "runtime", "model", "environment_id", "description", "system"} {
		f.Values[k] = strings.TrimSpace(r.PostForm.Get(k))
	}
	body := map[string]any{}
	for _, k := range []string{"name", "runtime", "model", "environment_id", "description", "system"} {
		setIf(body, k, f.Values[k])
	}
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
	u.render(w, r, http.StatusOK, "agent_new", s, p)
	return nil
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
	if p := r.PostForm.Get("prompt"); strings.TrimSpace(p) != "" {
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
	if _, err := u.db.GetAgent(r.Context(), s.User.ID, id); err != nil {
		return err
	}
	back := "/ui/agents/" + id
	prompt, timeout, problem := promptFields(r)
	if problem != "" {
		u.redirect(w, r, back, failure(problem))
		return nil
	}
	sess, err := u.sess.Create(r.Context(), s.User.ID, store.SessionInput{AgentID: id, Prompt: prompt, Timeout: timeout})
	if err != nil {
		return u.refuse(w, r, back, err)
	}
	u.redirect(w, r, "/ui/sessions/"+sess.ID, success("Session started."))
	return nil
}
