package server

import (
	"fmt"
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/aod/aod/sse"
	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

type resourceJSON struct {
	Type      string `json:"type"`
	URL       string `json:"url"`
	MountPath string `json:"mount_path"`
}

type sessionJSON struct {
	ID            string         `json:"id"`
	AgentID       *string        `json:"agent_id"`
	EnvironmentID *string        `json:"environment_id"`
	Runtime       string         `json:"runtime"`
	Provider      string         `json:"provider"`
	Status        string         `json:"status"`
	ExitCode      *int           `json:"exit_code"`
	CreatedAt     string         `json:"created_at"`
	UpdatedAt     string         `json:"updated_at"`
	Resources     []resourceJSON `json:"resources"`
	TurnCount     int            `json:"turn_count"`
	CurrentTurn   *int           `json:"current_turn"`
}

func resourcesOut(rs []store.Resource) []resourceJSON {
	out := make([]resourceJSON, len(rs))
	for i, r := range rs {
		out[i] = resourceJSON{Type: r.Type, URL: r.URL, MountPath: r.MountPath}
	}
	return out
}

func sessionOut(s *store.Session) sessionJSON {
	var current *int
	if s.CurrentTurn > 0 {
		c := s.CurrentTurn
		current = &c
	}
	return sessionJSON{
		ID: s.ID, AgentID: nullIfEmpty(s.AgentID), EnvironmentID: nullIfEmpty(s.EnvironmentID),
		Runtime: s.Runtime, Provider: s.Provider, Status: s.Status, ExitCode: s.ExitCode,
		CreatedAt: store.FormatTime(s.CreatedAt), UpdatedAt: store.FormatTime(s.UpdatedAt),
		Resources: resourcesOut(s.Resources), TurnCount: s.TurnCount, CurrentTurn: current,
	}
}

type turnJSON struct {
	TurnNumber int     `json:"turn_number"`
	Prompt     string  `json:"prompt"`
	Status     string  `json:"status"`
	ExitCode   *int    `json:"exit_code"`
	CreatedAt  string  `json:"created_at"`
	StartedAt  *string `json:"started_at"`
	EndedAt    *string `json:"ended_at"`
}

func turnOut(t *store.Turn) turnJSON {
	return turnJSON{TurnNumber: t.Number, Prompt: t.Prompt, Status: t.Status, ExitCode: t.ExitCode,
		CreatedAt: store.FormatTime(t.CreatedAt), StartedAt: timePtr(t.StartedAt), EndedAt: timePtr(t.EndedAt)}
}

func streamURL(id string) string { return "/sessions/" + id + "/stream" }

const (
	minTimeout     = 10
	maxTimeout     = 3600
	defaultTimeout = 600
	maxResources   = 10
)

var githubURLRE = regexp.MustCompile(`^https://github\.com/[\w.-]+/[\w.-]+(\.git)?$`)

// decodePromptFields reads prompt (required, non-empty) and timeout
// (10..3600, default 600), shared by create and prompt.
func decodePromptFields(o *object) (string, int) {
	prompt := o.str("prompt", 0)
	if s, ok := o.m["prompt"].(string); ok && s == "" {
		o.add("string_too_short", []any{"prompt"}, "String should have at least 1 character", s)
	}
	timeout, ok := o.integer("timeout", false, minTimeout, maxTimeout)
	if !ok {
		timeout = defaultTimeout
	}
	return prompt, int(timeout)
}

// decodeResources validates github_repository resources: the URL form
// (".git" stripped), absolute unique mount paths that are not the sprite's
// root, default mount /workspace/<repo>.
func decodeResources(o *object) []store.Resource {
	items, ok := o.list("resources")
	if !ok {
		return nil
	}
	var out []store.Resource
	valid := true
	seen := map[string]bool{}
	for i, it := range items {
		loc := func(field string) []any { return []any{"resources", i, field} }
		m, ok := it.(map[string]any)
		if !ok {
			o.add("model_type", []any{"resources", i}, "Input should be a valid dictionary or instance of GitHubRepoResource", it)
			valid = false
			continue
		}
		if t, present := m["type"]; !present {
			o.add("missing", loc("type"), "Field required", redactToken(m))
			valid = false
		} else if t != "github_repository" {
			o.add("literal_error", loc("type"), "Input should be 'github_repository'", t)
			valid = false
		}
		r := store.Resource{Type: "github_repository"}
		switch u := m["url"].(type) {
		case nil:
			o.add("missing", loc("url"), "Field required", redactToken(m))
			valid = false
		case string:
			if !githubURLRE.MatchString(u) {
				o.valueError(loc("url"), u, "Must be a valid https://github.com/<owner>/<repo> URL")
				valid = false
			}
			r.URL = strings.TrimSuffix(u, ".git")
		default:
			o.add("string_type", loc("url"), "Input should be a valid string", u)
			valid = false
		}
		switch mp := m["mount_path"].(type) {
		case nil:
			r.MountPath = "/workspace/" + path.Base(r.URL)
		case string:
			clean := path.Clean(mp)
			switch {
			case !strings.HasPrefix(mp, "/"):
				o.valueError(loc("mount_path"), mp, "mount_path must be an absolute path")
				valid = false
			case clean == "/" || clean == "/home/sprite":
				o.valueError(loc("mount_path"), mp, "mount_path must not be the Sprite root")
				valid = false
			}
			r.MountPath = clean
		default:
			o.add("string_type", loc("mount_path"), "Input should be a valid string", mp)
			valid = false
		}
		switch tok := m["authorization_token"].(type) {
		case nil:
		case string:
			r.Token = tok
		default:
			o.add("string_type", loc("authorization_token"), "Input should be a valid string", redacted)
			valid = false
		}
		if valid && seen[r.MountPath] {
			o.valueError([]any{"resources"}, r.MountPath, "Duplicate mount_path in resources")
			valid = false
		}
		seen[r.MountPath] = true
		out = append(out, r)
	}
	if len(items) > maxResources {
		o.valueError([]any{"resources"}, len(items), "Maximum %d resources per session", maxResources)
		valid = false
	}
	if !valid {
		return nil
	}
	return out
}

// redactToken hides a resource's token in a 422's input.
func redactToken(m map[string]any) map[string]any {
	if _, ok := m["authorization_token"]; !ok {
		return m
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	c["authorization_token"] = redacted
	return c
}

func (s *Server) handleSessionCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	agentRaw := o.str("agent_id", 0)
	prompt, timeout := decodePromptFields(o)
	envRaw := o.optStr("environment_id", 0)
	resources := decodeResources(o)
	secrets := decodeEnvVars(o, "secret_env_vars")
	if err := o.err(); err != nil {
		return err
	}
	agentID, ok := store.CanonicalID(agentRaw)
	if !ok {
		return store.Errorf(store.NotFound, "Agent not found")
	}
	var envID string
	if envRaw != nil && *envRaw != "" {
		id, err := resolveEnvID(envRaw)
		if err != nil {
			return err
		}
		envID = *id
	}
	sess, err := s.sessions.Create(r.Context(), u.ID, store.SessionInput{
		AgentID: agentID, EnvironmentID: envID, Prompt: prompt, Timeout: timeout, Resources: resources,
		SecretEnvVars: secrets,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, struct {
		ID            string         `json:"id"`
		Status        string         `json:"status"`
		StreamURL     string         `json:"stream_url"`
		EnvironmentID *string        `json:"environment_id"`
		Resources     []resourceJSON `json:"resources"`
		CurrentTurn   int            `json:"current_turn"`
	}{sess.ID, sess.Status, streamURL(sess.ID), nullIfEmpty(sess.EnvironmentID), resourcesOut(sess.Resources), sess.CurrentTurn})
	return nil
}

func (s *Server) handleSessionList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	sessions, err := s.db.ListSessions(r.Context(), u.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(sessions, sessionOut))
	return nil
}

func (s *Server) handleSessionGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session not found")
	if err != nil {
		return err
	}
	sess, err := s.db.GetSession(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sessionOut(sess))
	return nil
}

func (s *Server) handleSessionTurns(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session not found")
	if err != nil {
		return err
	}
	turns, err := s.db.ListTurns(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(turns, turnOut))
	return nil
}

func (s *Server) handleSessionPrompt(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session not found")
	if err != nil {
		return err
	}
	// The state check comes before the body is read, as in the original.
	if err := s.sessions.CheckPromptable(r.Context(), u.ID, id); err != nil {
		return err
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	prompt, timeout := decodePromptFields(o)
	if err := o.err(); err != nil {
		return err
	}
	sess, err := s.sessions.Prompt(r.Context(), u.ID, id, prompt, timeout)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, struct {
		ID          string `json:"id"`
		Status      string `json:"status"`
		StreamURL   string `json:"stream_url"`
		CurrentTurn int    `json:"current_turn"`
	}{sess.ID, sess.Status, streamURL(sess.ID), sess.CurrentTurn})
	return nil
}

func (s *Server) handleSessionTerminate(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	id, err := pathID(ps, "Session not found")
	if err != nil {
		return err
	}
	sess, err := s.sessions.Terminate(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}{sess.ID, sess.Status})
	return nil
}

func (s *Server) handleSessionDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	if err := s.sessions.Ready(); err != nil {
		return err
	}
	id, err := pathID(ps, "Session not found")
	if err != nil {
		return err
	}
	if err := s.sessions.Delete(r.Context(), u.ID, id); err != nil {
		return err
	}
	writeDetail(w, http.StatusOK, "Session deleted")
	return nil
}

func (s *Server) handleSessionStream(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session not found")
	if err != nil {
		return err
	}
	if _, err := s.db.GetSession(r.Context(), u.ID, id); err != nil {
		return err
	}
	cursor, err := sse.ParseCursor(r)
	if err != nil {
		return store.Errorf(store.BadRequest, "%s", err.Error())
	}
	if err := sse.Stream(r.Context(), w, s.db, id, cursor, s.cfg.Stream); err != nil {
		if store.ErrorCode(err) == store.NotFound {
			return err // deleted before the stream began: nothing written yet
		}
		// Headers are gone by now: log, don't answer.
		s.log.Warn("stream ended with an error", "session", id, "err", fmt.Sprint(err))
	}
	return nil
}
