package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aod/aod/catalogue"
	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// maxNameLen matches the API's limit on agent and environment names.
const maxNameLen = 200

// Session timeouts, as the API takes them.
const (
	minTimeout     = 10
	maxTimeout     = 3600
	defaultTimeout = 600
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
	id, ok := store.CanonicalID(ps.ByName("id"))
	if !ok {
		return "", store.Errorf(store.NotFound, "%s not found", what)
	}
	return id, nil
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
	p := agentPage{Agent: a, Timeout: defaultTimeout}
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
	name := f.require(r, "name")
	if utf8.RuneCountInString(name) > maxNameLen {
		f.add("name", fmt.Sprintf("Ensure this value has at most %d characters (it has %d).", maxNameLen, utf8.RuneCountInString(name)))
	}
	runtime := f.require(r, "runtime")
	model := f.require(r, "model")
	envRaw := strings.TrimSpace(r.PostForm.Get("environment_id"))
	f.Values["environment_id"] = envRaw
	f.Values["description"] = r.PostForm.Get("description")
	f.Values["system"] = r.PostForm.Get("system")
	var m store.Model
	if runtime != "" && model != "" {
		m, err = store.ResolveModel(runtime, "", model)
		if err != nil {
			field := "model"
			if store.ErrorCode(err) == store.BadRequest {
				field = "runtime" // an unknown runtime
			}
			f.add(field, store.ErrorMessage(err))
		}
	}
	envID := ""
	if envRaw != "" {
		id, ok := store.CanonicalID(envRaw)
		if !ok {
			f.add("environment_id", "Environment not found")
		}
		envID = id
	}
	if f.ok() {
		a, err := u.db.CreateAgent(r.Context(), s.User.ID, store.AgentInput{
			Name: name, Description: strings.TrimSpace(f.Values["description"]), System: strings.TrimSpace(f.Values["system"]),
			Model: m, EnvironmentID: envID,
		})
		switch store.ErrorCode(err) {
		case store.NotFound, store.Conflict:
			f.add("environment_id", store.ErrorMessage(err))
		default:
			if err != nil {
				return err
			}
			u.redirect(w, r, "/ui/agents/"+a.ID, success("Agent created."))
			return nil
		}
	}
	u.render(w, r, http.StatusOK, "agent_new", s, p)
	return nil
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
// form; a problem comes back as "<Label>: <message>" for a flash.
func promptFields(r *http.Request) (prompt string, timeout int, problem string) {
	prompt = r.PostForm.Get("prompt")
	if strings.TrimSpace(prompt) == "" {
		return "", 0, "Prompt: " + fieldRequired
	}
	timeout = defaultTimeout
	if raw := strings.TrimSpace(r.PostForm.Get("timeout")); raw != "" {
		n, err := strconv.Atoi(raw)
		switch {
		case err != nil:
			return "", 0, "Timeout: Enter a whole number."
		case n < minTimeout:
			return "", 0, fmt.Sprintf("Timeout: Ensure this value is greater than or equal to %d.", minTimeout)
		case n > maxTimeout:
			return "", 0, fmt.Sprintf("Timeout: Ensure this value is less than or equal to %d.", maxTimeout)
		}
		timeout = n
	}
	return prompt, timeout, ""
}

// sessionError is the flash for a refused session create or prompt: the
// API's message. Internal errors are returned for the 500 page instead.
func sessionError(err error) (string, bool) {
	switch store.ErrorCode(err) {
	case store.Internal:
		return "", false
	}
	return store.ErrorMessage(err), true
}

// refuse answers a refused session action the way every session form
// does: the API's message as an error flash on a redirect back. Internal
// errors are returned for the 500 page instead.
func (u *UI) refuse(w http.ResponseWriter, r *http.Request, back string, err error) error {
	msg, ok := sessionError(err)
	if !ok {
		return err
	}
	u.redirect(w, r, back, failure(msg))
	return nil
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
