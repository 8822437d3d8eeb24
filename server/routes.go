package server

import (
	"fmt"
	"maps"
	"net/http"
	"strconv"

	"github.com/julienschmidt/httprouter"
)

func (s *Server) routes() *httprouter.Router {
	r := httprouter.New()
	// The original serves no trailing-slash variants: /agents/ is a 404.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	// httprouter sets Allow before calling this, and it runs before any auth.
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeDetail(w, http.StatusMethodNotAllowed, "Method not allowed")
	})
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeDetail(w, http.StatusNotFound, "Not found")
	})
	r.PanicHandler = func(w http.ResponseWriter, req *http.Request, v any) {
		s.writeError(w, req, fmt.Errorf("panic: %v", v))
	}

	if s.cfg.UI != nil {
		// The web UI routes itself (cookie auth, CSRF, its own 405s) under
		// these prefixes; CORS never applies to them (see isAPIPath).
		ui := func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) { s.cfg.UI.ServeHTTP(w, req) }
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			r.Handle(m, "/ui", ui)
			r.Handle(m, "/ui/*path", ui)
			r.Handle(m, "/static/*path", ui)
		}
		r.Handle(http.MethodGet, "/", ui)
		r.Handle(http.MethodHead, "/", ui)
	}

	for _, rt := range s.apiRoutes() {
		r.Handle(rt.method, rt.path, rt.handle)
	}
	return r
}

// route is one API route: its method, its path in httprouter's syntax
// (":id") and its handler. apiRoutes lists them all in one table, which
// routes registers and the OpenAPI test compares with the document.
type route struct {
	method string
	path   string
	handle httprouter.Handle
}

// apiRoutes is every route of the API (the web UI's are not in it). All
// but /health and /openapi.json need a bearer token.
func (s *Server) apiRoutes() []route {
	a := s.authed
	return []route{
		{http.MethodGet, "/health", s.handleHealth},
		{http.MethodHead, "/health", s.handleHealth}, // load balancers' checks: the status, no body
		{http.MethodGet, "/openapi.json", s.handleOpenAPI},

		{http.MethodPost, "/agents", a(s.handleAgentCreate)},
		{http.MethodGet, "/agents", a(s.handleAgentList)},
		{http.MethodGet, "/agents/:id", a(s.handleAgentGet)},
		{http.MethodPut, "/agents/:id", a(s.handleAgentUpdate)},
		{http.MethodPost, "/agents/:id/archive", a(s.handleAgentArchive)},
		{http.MethodGet, "/agents/:id/versions", a(s.handleAgentVersions)},

		{http.MethodPost, "/environments", a(s.handleEnvironmentCreate)},
		{http.MethodGet, "/environments", a(s.handleEnvironmentList)},
		{http.MethodGet, "/environments/:id", a(s.handleEnvironmentGet)},
		{http.MethodPut, "/environments/:id", a(s.handleEnvironmentUpdate)},
		{http.MethodPost, "/environments/:id/archive", a(s.handleEnvironmentArchive)},
		{http.MethodDelete, "/environments/:id/delete", a(s.handleEnvironmentDelete)},
		{http.MethodGet, "/environments/:id/versions", a(s.handleEnvironmentVersions)},

		{http.MethodPost, "/sessions", a(s.handleSessionCreate)},
		{http.MethodGet, "/sessions", a(s.handleSessionList)},
		{http.MethodGet, "/sessions/:id", a(s.handleSessionGet)},
		{http.MethodGet, "/sessions/:id/turns", a(s.handleSessionTurns)},
		{http.MethodGet, "/sessions/:id/egress", a(s.handleSessionEgress)},
		{http.MethodGet, "/sessions/:id/provision-log", a(s.handleSessionProvisionLog)},
		{http.MethodPost, "/sessions/:id/prompt", a(s.handleSessionPrompt)},
		{http.MethodPost, "/sessions/:id/interrupt", a(s.handleSessionInterrupt)},
		{http.MethodGet, "/sessions/:id/files", a(s.handleSessionFiles)},
		{http.MethodGet, "/sessions/:id/files/content", a(s.handleSessionFileContent)},
		{http.MethodGet, "/sessions/:id/archive", a(s.handleSessionArchive)},
		{http.MethodGet, "/sessions/:id/diff", a(s.handleSessionDiff)},
		{http.MethodGet, "/sessions/:id/events", a(s.handleSessionEvents)},
		{http.MethodPost, "/sessions/:id/terminate", a(s.handleSessionTerminate)},
		{http.MethodDelete, "/sessions/:id/delete", a(s.handleSessionDelete)},
		{http.MethodGet, "/sessions/:id/stream", a(s.handleSessionStream)},

		{http.MethodPost, "/webhooks", a(s.handleWebhookCreate)},
		{http.MethodGet, "/webhooks", a(s.handleWebhookList)},
		{http.MethodGet, "/webhooks/:id", a(s.handleWebhookGet)},
		{http.MethodDelete, "/webhooks/:id/delete", a(s.handleWebhookDelete)},
		{http.MethodGet, "/webhooks/:id/deliveries", a(s.handleWebhookDeliveries)},
		{http.MethodPost, "/webhooks/:id/deliveries/:delivery_id/redeliver", a(s.handleWebhookRedeliver)},

		{http.MethodGet, "/secrets", a(s.handleSecretList)},
		{http.MethodPut, "/secrets/:name", a(s.handleSecretPut)},
		{http.MethodDelete, "/secrets/:name/delete", a(s.handleSecretDelete)},

		{http.MethodGet, "/api-keys", a(s.handleAPIKeyList)},
		{http.MethodPost, "/api-keys", a(s.handleAPIKeyCreate)},
		{http.MethodPost, "/api-keys/:prefix/revoke", a(s.handleAPIKeyRevoke)},

		{http.MethodPost, "/admin/api-keys", a(s.handleAdminAPIKeyCreate)},
	}
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	checks := map[string]string{"db": "ok", "crypto": "ok"}
	status, code := "ok", http.StatusOK
	if err := s.db.Ping(r.Context()); err != nil {
		checks["db"], status, code = "fail: "+err.Error(), "degraded", http.StatusServiceUnavailable
	}
	if err := s.db.CheckCrypto(); err != nil {
		checks["crypto"], status, code = "fail: "+err.Error(), "degraded", http.StatusServiceUnavailable
	}
	limits := maps.Clone(s.cfg.Limits)
	if limits == nil {
		limits = map[string]string{}
	}
	sc := s.cfg.Streams.Config()
	limits["streams_per_user"] = limitString(sc.MaxPerUser)
	limits["streams"] = limitString(sc.MaxTotal)
	limits["stream_write_timeout"] = sc.WriteTimeout.String()
	writeJSON(w, code, struct {
		Status  string            `json:"status"`
		Checks  map[string]string `json:"checks"`
		Limits  map[string]string `json:"limits,omitempty"`
		Version string            `json:"version"`
	}{status, checks, limits, s.cfg.Version})
}

// limitString shows a count limit, "none" when it is off.
func limitString(n int) string {
	if n <= 0 {
		return "none"
	}
	return strconv.Itoa(n)
}
