package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// agentJSON is the agent shape of the contract, in its key order.
type agentJSON struct {
	ID            string            `json:"id"`
	Type          string            `json:"type"`
	Name          string            `json:"name"`
	Description   *string           `json:"description"`
	System        *string           `json:"system"`
	Model         string            `json:"model"`
	Runtime       string            `json:"runtime"`
	Provider      string            `json:"provider"`
	EnvironmentID *string           `json:"environment_id"`
	Skills        json.RawMessage   `json:"skills"`
	MCPServers    json.RawMessage   `json:"mcp_servers"`
	Metadata      map[string]string `json:"metadata"`
	Version       int               `json:"version"`
	ArchivedAt    *string           `json:"archived_at"`
	CreatedAt     string            `json:"created_at"`
	UpdatedAt     string            `json:"updated_at"`
}

// agentVersionJSON is an agent snapshot: no archived_at, no updated_at.
type agentVersionJSON struct {
	ID            string            `json:"id"`
	Type          string            `json:"type"`
	Name          string            `json:"name"`
	Description   *string           `json:"description"`
	System        *string           `json:"system"`
	Model         string            `json:"model"`
	Runtime       string            `json:"runtime"`
	Provider      string            `json:"provider"`
	EnvironmentID *string           `json:"environment_id"`
	Skills        json.RawMessage   `json:"skills"`
	MCPServers    json.RawMessage   `json:"mcp_servers"`
	Metadata      map[string]string `json:"metadata"`
	Version       int               `json:"version"`
	CreatedAt     string            `json:"created_at"`
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := store.FormatTime(*t)
	return &s
}

func agentOut(a *store.Agent) agentJSON {
	return agentJSON{
		ID: a.ID, Type: "agent", Name: a.Name, Description: nullIfEmpty(a.Description), System: nullIfEmpty(a.System),
		Model: a.Model, Runtime: a.Runtime, Provider: a.Provider, EnvironmentID: nullIfEmpty(a.EnvironmentID),
		Skills: a.Skills, MCPServers: a.MCPServers, Metadata: a.Metadata, Version: a.Version,
		ArchivedAt: timePtr(a.ArchivedAt), CreatedAt: store.FormatTime(a.CreatedAt), UpdatedAt: store.FormatTime(a.UpdatedAt),
	}
}

func agentVersionOut(v *store.AgentVersion) agentVersionJSON {
	return agentVersionJSON{
		ID: v.ID, Type: "agent", Name: v.Name, Description: nullIfEmpty(v.Description), System: nullIfEmpty(v.System),
		Model: v.Model, Runtime: v.Runtime, Provider: v.Provider, EnvironmentID: nullIfEmpty(v.EnvironmentID),
		Skills: v.Skills, MCPServers: v.MCPServers, Metadata: v.Metadata, Version: v.Version,
		CreatedAt: store.FormatTime(v.CreatedAt),
	}
}

type listJSON[T any] struct {
	Data []T `json:"data"`
}

func mapList[S, T any](in []S, f func(S) T) listJSON[T] {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return listJSON[T]{out}
}

func (s *Server) handleAgentCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	in, err := validate.AgentInput(o)
	if err != nil {
		return err
	}
	a, err := s.db.CreateAgent(r.Context(), u.ID, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, agentOut(a))
	return nil
}

func (s *Server) handleAgentList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	agents, err := s.db.ListAgents(r.Context(), u.ID, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(agents, agentOut))
	return nil
}

func (s *Server) handleAgentGet(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	a, err := s.db.GetAgent(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, agentOut(a))
	return nil
}

func (s *Server) handleAgentUpdate(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	p, err := validate.AgentPatch(o)
	if err != nil {
		return err
	}
	a, err := s.db.UpdateAgent(r.Context(), u.ID, id, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, agentOut(a))
	return nil
}

func (s *Server) handleAgentArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	a, err := s.db.ArchiveAgent(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, agentOut(a))
	return nil
}

func (s *Server) handleAgentVersions(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Agent")
	if err != nil {
		return err
	}
	versions, err := s.db.AgentVersions(r.Context(), u.ID, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(versions, agentVersionOut))
	return nil
}
