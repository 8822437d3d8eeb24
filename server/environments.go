package server

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
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
	head, _ := json.Marshal(map[string]string{"type": n.Type}) // a policy type is a plain word
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

func (s *Server) handleEnvironmentCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	in, err := validate.EnvironmentInput(o)
	if err != nil {
		return err
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
	id, err := pathID(ps, "Environment")
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
	id, err := pathID(ps, "Environment")
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
	p, err := validate.EnvironmentPatch(o)
	if err != nil {
		return err
	}
	e, err := s.db.UpdateEnvironment(r.Context(), u.ID, id, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, environmentOut(e))
	return nil
}

func (s *Server) handleEnvironmentArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Environment")
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
	id, err := pathID(ps, "Environment")
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
	id, err := pathID(ps, "Environment")
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
