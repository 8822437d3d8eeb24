package server

import (
	"net/http"

	"github.com/aod/aod/runner/sprite"
	"github.com/aod/aod/sessions"
	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// The files API (see sessions' files.go): list, download, archive, diff.

// sessionSprite reads the request's session id and path and finds the
// sprite.
func (s *Server) sessionSprite(r *http.Request, ps httprouter.Params, u *store.User) (sprite.Sprite, string, string, error) {
	id, err := pathID(ps, "Session")
	if err != nil {
		return nil, "", "", err
	}
	p, err := sessions.SpritePath(r.URL.Query().Get("path"))
	if err != nil {
		return nil, "", "", err
	}
	sp, err := s.sessions.Sprite(r.Context(), u.ID, id)
	return sp, id, p, err
}

func (s *Server) handleSessionFiles(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	sp, _, p, err := s.sessionSprite(r, ps, u)
	if err != nil {
		return err
	}
	list, err := sessions.ListFiles(r.Context(), sp, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": list})
	return nil
}

func (s *Server) handleSessionFileContent(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	sp, _, p, err := s.sessionSprite(r, ps, u)
	if err != nil {
		return err
	}
	return sessions.ServeFile(w, r, sp, p, s.cfg.MaxDownload)
}

func (s *Server) handleSessionArchive(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	sp, id, p, err := s.sessionSprite(r, ps, u)
	if err != nil {
		return err
	}
	return sessions.ServeArchive(w, r, sp, id, p)
}

// handleSessionDiff answers the unified diff of the session's repositories
// against the commits they were cloned at (empty without repositories or
// changes), computed inside the sprite.
func (s *Server) handleSessionDiff(w http.ResponseWriter, r *http.Request, ps httprouter.Params, u *store.User) error {
	id, err := pathID(ps, "Session")
	if err != nil {
		return err
	}
	return s.sessions.ServeDiff(w, r, u.ID, id)
}
