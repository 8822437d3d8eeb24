package server

import (
	"net/http"
	"time"

	"github.com/aod/aod/store"
	"github.com/aod/aod/validate"
	"github.com/julienschmidt/httprouter"
)

// A caller's own API keys over HTTP: a dashboard can give each person a
// key of their own without a shell on the server. The token is shown
// once, in the create response; the store keeps only its hash.

type apiKeyJSON struct {
	ID        int64   `json:"id"`
	Name      string  `json:"name"`
	Prefix    string  `json:"prefix"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	RevokedAt *string `json:"revoked_at"`
	Admin     bool    `json:"admin"`           // an operator key (see handleAdminAPIKeyCreate)
	Token     string  `json:"token,omitempty"` // only when created
}

func apiKeyOut(k *store.APIKey) apiKeyJSON {
	out := apiKeyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: store.FormatTime(k.CreatedAt),
		ExpiresAt: timePtr(k.ExpiresAt), RevokedAt: timePtr(k.RevokedAt), Admin: k.Admin}
	if !k.Active && out.RevokedAt == nil {
		// Revoked before revocation times were kept.
		out.RevokedAt = &out.CreatedAt
	}
	return out
}

func (s *Server) handleAPIKeyList(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	keys, err := s.db.ListAPIKeys(r.Context(), u.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mapList(keys, apiKeyOut))
	return nil
}

func (s *Server) handleAPIKeyCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	o, err := readObject(w, r)
	if err != nil {
		return err
	}
	name, expiresIn, err := validate.APIKeyInput(o)
	if err != nil {
		return err
	}
	var expires *time.Time
	if expiresIn > 0 {
		t := time.Now().Add(time.Duration(expiresIn) * time.Second)
		expires = &t
	}
	k, raw, err := s.db.CreateAPIKey(r.Context(), u.ID, name, expires)
	if err != nil {
		return err
	}
	out := apiKeyOut(k)
	out.Token = raw
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) handleAPIKeyRevoke(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	k, err := s.db.RevokeUserAPIKey(r.Context(), u.ID, ps.ByName("prefix"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiKeyOut(k))
	return nil
}
