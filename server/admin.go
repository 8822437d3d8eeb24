package server

import (
	"net/http"
	"time"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// An operator key (`aod token create --admin`) lets a dashboard hold one
// key per person: it creates a user, if new, and a key for them. The key
// made here is an ordinary one; no HTTP route makes an operator key.

// adminAPIKeyJSON is the created key, with its user.
type adminAPIKeyJSON struct {
	apiKeyJSON
	User string `json:"user"`
}

func (s *Server) handleAdminAPIKeyCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	if !u.Operator {
		return store.Errorf(store.Forbidden, "This route needs an operator key (aod token create --admin)")
	}
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	in, err := validate.AdminAPIKeyInput(o)
	if err != nil {
		return err
	}
	owner, err := s.db.EnsureUser(r.Context(), in.User)
	if err != nil {
		return err
	}
	var expires *time.Time
	if in.ExpiresIn > 0 {
		t := time.Now().Add(time.Duration(in.ExpiresIn) * time.Second)
		expires = &t
	}
	k, raw, err := s.db.CreateAPIKey(r.Context(), owner.ID, in.Name, expires)
	if err != nil {
		return err
	}
	out := adminAPIKeyJSON{apiKeyOut(k), owner.Username}
	out.Token = raw
	s.log.Info("operator created an API key", "operator", u.ID, "user", owner.ID, "key", k.Prefix)
	writeJSON(w, http.StatusCreated, out)
	return nil
}
