package server

import (
	"net/http"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// A user's secrets: name -> value, encrypted at rest, given to every
// session of the user as env vars (below the environment's and the
// session's own) and counted by the model-key check. Values go in and
// never come out: no response, log line or 422 holds one.

type secretJSON struct {
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
	UpdatedAt string `json:"updated_at"`
}

func secretOut(s store.Secret) secretJSON {
	return secretJSON{Name: s.Name, CreatedAt: store.FormatTime(s.CreatedAt), UpdatedAt: store.FormatTime(s.UpdatedAt)}
}

func (s *Server) handleSecretList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	list, err := s.db.ListSecrets(r.Context(), u.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(list, secretOut))
	return nil
}

// handleSecretPut creates (201) or replaces (200) the secret the path
// names with the body's value.
func (s *Server) handleSecretPut(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	in, err := validate.SecretInput(ps.ByName("name"), o)
	if err != nil {
		return err
	}
	sec, created, err := s.db.PutSecret(r.Context(), u.ID, in.Name, in.Value)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, secretOut(*sec))
	return nil
}

func (s *Server) handleSecretDelete(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	if err := s.db.DeleteSecret(r.Context(), u.ID, ps.ByName("name")); err != nil {
		return err
	}
	writeDetail(w, http.StatusOK, "Secret deleted")
	return nil
}
