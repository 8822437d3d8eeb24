package server

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"
)

// openapiDoc is the OpenAPI 3.1 document of the API, written by hand next
// to the handlers. Tests keep it true: every route in apiRoutes is in it
// and the other way round, and every response the API tests receive
// validates against its schemas.
//
//go:embed openapi.json
var openapiDoc []byte

// openapiETag identifies the document's content, so a client can keep a
// copy and ask whether it is still current.
var openapiETag = func() string {
	sum := sha256.Sum256(openapiDoc)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// OpenAPI returns a copy of the OpenAPI document GET /openapi.json serves.
func OpenAPI() []byte { return bytes.Clone(openapiDoc) }

// handleOpenAPI serves the document, public like /health: it describes the
// API and holds nothing of any user's.
func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	h := w.Header()
	h.Set("ETag", openapiETag)
	h.Set("Cache-Control", "public, max-age=300")
	if etagMatches(r.Header.Get("If-None-Match"), openapiETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(openapiDoc)
}

// etagMatches reports whether an If-None-Match header names etag (or is
// "*"). Weak validators compare equal to strong ones here, as RFC 9110
// asks of If-None-Match.
func etagMatches(header, etag string) bool {
	for _, tag := range strings.Split(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}
