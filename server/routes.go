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

	r.GET("/health", s.handleHealth)

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

	r.POST("/agents", s.authed(s.handleAgentCreate))
	r.GET("/agents", s.authed(s.handleAgentList))
	r.GET("/agents/:id", s.authed(s.handleAgentGet))
	r.PUT("/agents/:id", s.authed(s.handleAgentUpdate))
	r.POST("/agents/:id/archive", s.authed(s.handleAgentArchive))
	r.GET("/agents/:id/versions", s.authed(s.handleAgentVersions))

	r.POST("/environments", s.authed(s.handleEnvironmentCreate))
	r.GET("/environments", s.authed(s.handleEnvironmentList))
	r.GET("/environments/:id", s.authed(s.handleEnvironmentGet))
	r.PUT("/environments/:id", s.authed(s.handleEnvironmentUpdate))
	r.POST("/environments/:id/archive", s.authed(s.handleEnvironmentArchive))
	r.DELETE("/environments/:id/delete", s.authed(s.handleEnvironmentDelete))
	r.GET("/environments/:id/versions", s.authed(s.handleEnvironmentVersions))

	r.POST("/sessions", s.authed(s.handleSessionCreate))
	r.GET("/sessions", s.authed(s.handleSessionList))
	r.GET("/sessions/:id", s.authed(s.handleSessionGet))
	r.GET("/sessions/:id/turns", s.authed(s.handleSessionTurns))
	r.GET("/sessions/:id/egress", s.authed(s.handleSessionEgress))
	r.GET("/sessions/:id/provision-log", s.authed(s.handleSessionProvisionLog))
	r.POST("/sessions/:id/prompt", s.authed(s.handleSessionPrompt))
	r.POST("/webhooks", s.authed(s.handleWebhookCreate))
	r.GET("/webhooks", s.authed(s.handleWebhookList))
	r.GET("/webhooks/:id", s.authed(s.handleWebhookGet))
	r.DELETE("/webhooks/:id/delete", s.authed(s.handleWebhookDelete))
	r.GET("/webhooks/:id/deliveries", s.authed(s.handleWebhookDeliveries))
	r.POST("/webhooks/:id/deliveries/:delivery_id/redeliver", s.authed(s.handleWebhookRedeliver))
	r.GET("/api-keys", s.authed(s.handleAPIKeyList))
	r.POST("/api-keys", s.authed(s.handleAPIKeyCreate))
	r.POST("/api-keys/:prefix/revoke", s.authed(s.handleAPIKeyRevoke))
	r.POST("/admin/api-keys", s.authed(s.handleAdminAPIKeyCreate))
	r.POST("/sessions/:id/interrupt", s.authed(s.handleSessionInterrupt))
	r.GET("/sessions/:id/files", s.authed(s.handleSessionFiles))
	r.GET("/sessions/:id/files/content", s.authed(s.handleSessionFileContent))
	r.GET("/sessions/:id/archive", s.authed(s.handleSessionArchive))
	r.GET("/sessions/:id/diff", s.authed(s.handleSessionDiff))
	r.GET("/sessions/:id/events", s.authed(s.handleSessionEvents))
	r.POST("/sessions/:id/terminate", s.authed(s.handleSessionTerminate))
	r.DELETE("/sessions/:id/delete", s.authed(s.handleSessionDelete))
	r.GET("/sessions/:id/stream", s.authed(s.handleSessionStream))
	return r
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
