package server

import (
	"net/http"

	"github.com/aod/aod/store"
	"github.com/julienschmidt/httprouter"
)

// handleAdminAPIKeyCreate: an operator key creates a user (if new) and a
// key for them. Filled in below.
func (s *Server) handleAdminAPIKeyCreate(w http.ResponseWriter, r *http.Request, _ httprouter.Params, u *store.User) error {
	return store.Errorf(store.NotFound, "Not found")
}
